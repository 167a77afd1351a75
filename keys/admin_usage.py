"""Admin for request logs and daily spend: read-only, filterable.

Both tables are written by the request log flush only; an operator reads them here and can neither
add, change nor delete a row (a log that could be edited would prove nothing). Counting every row of
a large log table for the paginator is skipped (`show_full_result_count`).
"""
from __future__ import annotations

from django.contrib import admin

from keys.models import DailySpend, RequestLog


class _ReadOnlyAdmin(admin.ModelAdmin):
    actions = None
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(_ReadOnlyAdmin):
    list_display = ("request_id", "created_at", "key_display", "team_id", "operation", "model_group",
                    "deployment_id", "status", "status_code", "error_type", "total_tokens", "cost_display",
                    "latency_display", "streamed")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "operation", "streamed", "model_group",
                   "team_id", "key_id", "error_type")
    search_fields = ("=request_id", "=key_id", "key_alias", "=team_id", "user_id", "model_group", "deployment_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = ("request_id", "created_at", "key_id", "key_alias", "team_id", "user_id", "operation", "model_group",
              "deployment_id", "provider", "provider_model", "streamed", "status", "status_code", "error_type",
              "prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms", "time_to_first_token_ms",
              "attempts", "fallbacks", "metadata")

    @admin.display(description="Key", ordering="key_alias")
    def key_display(self, log: RequestLog) -> str:
        if not log.key_id:
            return "master key"
        return f"{log.key_alias} ({log.key_id})" if log.key_alias else log.key_id

    @admin.display(description="Cost (USD)", ordering="cost")
    def cost_display(self, log: RequestLog) -> str:
        return f"{log.cost:.6f}"

    @admin.display(description="Latency (ms)", ordering="latency_ms")
    def latency_display(self, log: RequestLog) -> str:
        return f"{log.latency_ms:.0f}"


@admin.register(DailySpend)
class DailySpendAdmin(_ReadOnlyAdmin):
    list_display = ("date", "key_id", "team_id", "model_group", "requests", "errors", "prompt_tokens",
                    "completion_tokens", "cost_display")
    list_filter = (("date", admin.DateFieldListFilter), "model_group", "team_id", "key_id")
    search_fields = ("=key_id", "=team_id", "model_group")
    date_hierarchy = "date"
    ordering = ("-date", "key_id", "model_group")

    @admin.display(description="Cost (USD)", ordering="cost")
    def cost_display(self, row: DailySpend) -> str:
        return f"{row.cost:.6f}"
