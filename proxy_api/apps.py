from django.apps import AppConfig


class ProxyApiConfig(AppConfig):
    name = "proxy_api"
    verbose_name = "API"
