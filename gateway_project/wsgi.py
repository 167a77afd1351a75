"""WSGI entry point; gunicorn loads `application` from here."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
application = get_wsgi_application()

# Each worker runs its own periodic deployment checks when the config asks for them.
from models_registry.health import background_health_checks_start  # noqa: E402

background_health_checks_start()
