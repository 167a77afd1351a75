from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Keys, teams and spend"
    default_auto_field = "django.db.models.BigAutoField"
