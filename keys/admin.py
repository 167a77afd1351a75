"""The keys app's admin, one module per concern (registration happens on import)."""
from keys import admin_keys, admin_usage  # noqa: F401
