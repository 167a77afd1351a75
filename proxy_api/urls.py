"""Every API route, each with and without the `/v1` prefix (the OpenAI SDK may use either base URL)."""
from django.urls import path

from proxy_api.views.health import LivenessView, ReadinessView
from proxy_api.views.inference import ChatCompletionsView, CompletionsView, EmbeddingsView, ModerationsView
from proxy_api.views.models import ModelDetailView, ModelsView

openai_routes = [
    ("chat/completions", ChatCompletionsView, "chat-completions"),
    ("completions", CompletionsView, "completions"),
    ("embeddings", EmbeddingsView, "embeddings"),
    ("moderations", ModerationsView, "moderations"),
    ("models", ModelsView, "models"),
    ("models/<path:model_id>", ModelDetailView, "model-detail"),
]

urlpatterns = []
for route, view, name in openai_routes:
    urlpatterns.append(path(f"v1/{route}", view.as_view(), name=f"v1-{name}"))
    urlpatterns.append(path(route, view.as_view(), name=name))

# Management API (model management, keys and teams, spend): each block owned by its module.
# -- model management routes --
# -- key and team routes --
# -- spend routes --

urlpatterns += [
    path("health/liveliness", LivenessView.as_view(), name="health-liveliness"),
    path("health/liveness", LivenessView.as_view(), name="health-liveness"),
    path("health/readiness", ReadinessView.as_view(), name="health-readiness"),
]
