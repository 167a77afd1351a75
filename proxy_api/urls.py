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

# -- Anthropic Messages API (Anthropic's SDK always uses the /v1 prefix) --
from proxy_api.views.messages import MessagesCountTokensView, MessagesView  # noqa: E402

urlpatterns += [
    path("v1/messages", MessagesView.as_view(), name="v1-messages"),
    path("v1/messages/count_tokens", MessagesCountTokensView.as_view(), name="v1-messages-count-tokens"),
]

# -- Azure OpenAI routes: the path names the model group (`chat/completions` first: `{model}` may hold slashes) --
from proxy_api.views import azure as _azure  # noqa: E402

urlpatterns += [
    path("openai/deployments/<path:model>/chat/completions", _azure.AzureChatCompletionsView.as_view(),
         name="azure-chat-completions"),
    path("openai/deployments/<path:model>/completions", _azure.AzureCompletionsView.as_view(),
         name="azure-completions"),
    path("openai/deployments/<path:model>/embeddings", _azure.AzureEmbeddingsView.as_view(), name="azure-embeddings"),
]

# Management API (model management, keys and teams, spend): each block owned by its module.
# -- model management routes --
from proxy_api.views import model_management as _models  # noqa: E402
from proxy_api.views.health import HealthView  # noqa: E402

urlpatterns += [
    path("model/new", _models.ModelNewView.as_view(), name="model-new"),
    path("model/update", _models.ModelUpdateView.as_view(), name="model-update"),
    path("model/<str:model_id>/update", _models.ModelPatchView.as_view(), name="model-patch"),
    path("model/delete", _models.ModelDeleteView.as_view(), name="model-delete"),
    path("v1/model/info", _models.ModelInfoView.as_view(), name="v1-model-info"),
    path("model/info", _models.ModelInfoView.as_view(), name="model-info"),
    path("model_group/info", _models.ModelGroupInfoView.as_view(), name="model-group-info"),
    path("health", HealthView.as_view(), name="health"),
]
# -- key and team routes --
from proxy_api.views import keys as _keys  # noqa: E402
from proxy_api.views import teams as _teams  # noqa: E402

urlpatterns += [
    path("key/generate", _keys.KeyGenerateView.as_view(), name="key-generate"),
    path("key/info", _keys.KeyInfoView.as_view(), name="key-info"),
    path("key/update", _keys.KeyUpdateView.as_view(), name="key-update"),
    path("key/delete", _keys.KeyDeleteView.as_view(), name="key-delete"),
    path("key/list", _keys.KeyListView.as_view(), name="key-list"),
    path("key/regenerate", _keys.KeyRegenerateView.as_view(), name="key-regenerate"),
    path("key/<str:key>/regenerate", _keys.KeyRegenerateByPathView.as_view(), name="key-regenerate-by-path"),
    path("key/block", _keys.KeyBlockView.as_view(), name="key-block"),
    path("key/unblock", _keys.KeyUnblockView.as_view(), name="key-unblock"),
    path("team/new", _teams.TeamNewView.as_view(), name="team-new"),
    path("team/info", _teams.TeamInfoView.as_view(), name="team-info"),
    path("team/update", _teams.TeamUpdateView.as_view(), name="team-update"),
    path("team/delete", _teams.TeamDeleteView.as_view(), name="team-delete"),
    path("team/list", _teams.TeamListView.as_view(), name="team-list"),
]
# -- spend routes --
from proxy_api.views.spend import SpendLogsView  # noqa: E402

urlpatterns += [
    path("spend/logs", SpendLogsView.as_view(), name="spend-logs"),
]

# -- Prometheus metrics (`/metrics/` too: scrape configs are written both ways) --
from proxy_api.views.metrics import MetricsSlashView, MetricsView  # noqa: E402

urlpatterns += [
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("metrics/", MetricsSlashView.as_view(), name="metrics-slash"),
]

urlpatterns += [
    path("health/liveliness", LivenessView.as_view(), name="health-liveliness"),
    path("health/liveness", LivenessView.as_view(), name="health-liveness"),
    path("health/readiness", ReadinessView.as_view(), name="health-readiness"),
]
# -- managed files routes --
from proxy_api.views import files as _files  # noqa: E402

urlpatterns += [
    path("v1/files", _files.FilesView.as_view(), name="v1-files"),
    path("files", _files.FilesView.as_view(), name="files"),
    path("v1/files/<str:file_id>", _files.FileDetailView.as_view(), name="v1-file-detail"),
    path("files/<str:file_id>", _files.FileDetailView.as_view(), name="file-detail"),
    path("v1/files/<str:file_id>/content", _files.FileContentView.as_view(), name="v1-file-content"),
    path("files/<str:file_id>/content", _files.FileContentView.as_view(), name="file-content"),
]
# -- managed batches routes --
from proxy_api.views import batches as _batches  # noqa: E402

urlpatterns += [
    path("v1/batches", _batches.BatchesView.as_view(), name="v1-batches"),
    path("batches", _batches.BatchesView.as_view(), name="batches"),
    path("v1/batches/<str:batch_id>", _batches.BatchDetailView.as_view(), name="v1-batch-detail"),
    path("batches/<str:batch_id>", _batches.BatchDetailView.as_view(), name="batch-detail"),
    path("v1/batches/<str:batch_id>/cancel", _batches.BatchCancelView.as_view(), name="v1-batch-cancel"),
    path("batches/<str:batch_id>/cancel", _batches.BatchCancelView.as_view(), name="batch-cancel"),
]
