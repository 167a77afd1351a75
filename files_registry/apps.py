from django.apps import AppConfig


class FilesRegistryConfig(AppConfig):
    name = "files_registry"
    verbose_name = "Managed files"
    default_auto_field = "django.db.models.BigAutoField"
