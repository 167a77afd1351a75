"""Admin for managed batches: who owns each, where it runs, how far it got, and cancelling it.

Batches and their parts are written by the API and the workers only, so every page is read-only. The
list shows each batch's owner (the key's alias when the key still exists), model group, engines and
deployments (from its parts), status and a progress bar of live counts. Cancelling (a list action, or
the button on a batch's page) runs the same service as `POST /v1/batches/{id}/cancel`. The output and
error files download through the managed files' admin view.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from batches import services as batch_services
from batches.choices import BATCH_ACTIVE
from batches.models import Batch, BatchPart
from batches.selectors import part_running_counts
from files_registry.models import ManagedFile
from keys.models import VirtualKey
from providers.errors import GatewayError

BATCH_FIELDS = ("id", "status", "owner", "endpoint", "requested_model", "model_group", "input_file",
                "completion_window", "metadata", "errors", "total", "completed", "failed", "progress",
                "prompt_tokens", "completion_tokens", "cost", "output_download", "error_download", "cancel_button",
                "created_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                "cancelling_at", "cancelled_at", "expires_at", "updated_at")
PART_FIELDS = ("index", "deployment_id", "provider", "engine", "status", "first_line", "line_count", "completed",
               "failed", "provider_batch_id", "provider_status", "provider_completed", "provider_failed",
               "lease_owner", "lease_expires_at", "attempts", "error", "finished_at")


def live_counts(batch: Batch) -> tuple[int, int]:
    """(completed, failed) as the API shows them, from the parts prefetched with the batch."""
    completed, failed = batch.completed, batch.failed
    if batch.status in BATCH_ACTIVE:
        for part in batch.parts.all():
            running_completed, running_failed = part_running_counts(part)
            completed, failed = completed + running_completed, failed + running_failed
    return completed, failed


def progress_bar(*, completed: int, failed: int, total: int) -> str:
    """A bar of completed (green) and failed (red) lines out of the total, with the numbers beside it."""
    done_width = round(100 * completed / total, 1) if total else 0
    failed_width = round(100 * failed / total, 1) if total else 0
    return format_html(
        '<div class="batch-progress" style="display:flex;align-items:center;gap:6px">'
        '<div style="display:flex;width:120px;height:10px;background:#e5e5e5;border-radius:3px;overflow:hidden">'
        '<div style="width:{}%;background:#3a9b4a"></div><div style="width:{}%;background:#c2413b"></div></div>'
        '<span>{} completed, {} failed / {}</span></div>',
        done_width, failed_width, completed, failed, total)


class BatchPartInline(admin.TabularInline):
    model = BatchPart
    fields = PART_FIELDS
    readonly_fields = PART_FIELDS
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "model_group", "engines", "deployments", "status", "progress", "created_at",
                    "updated_at")
    list_filter = ("status", "model_group")
    search_fields = ("id", "owner_key_id", "owner_team_id", "model_group", "requested_model")
    readonly_fields = BATCH_FIELDS
    fields = BATCH_FIELDS
    inlines = [BatchPartInline]
    actions = ["cancel_batches"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        alias = VirtualKey.objects.filter(id=OuterRef("owner_key_id")).values("key_alias")[:1]
        parts = Prefetch("parts", queryset=BatchPart.objects.order_by("index"))
        return super().get_queryset(request).annotate(owner_alias=Subquery(alias)).select_related(
            "output_file", "error_file").prefetch_related(parts)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # written by the API and the workers only: the change page is a read-only view

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # its output files and spend refer to it

    @admin.display(description="owner", ordering="owner_key_id")
    def owner(self, batch: Batch) -> str:
        if not batch.owner_key_id:
            return "master key"
        alias = getattr(batch, "owner_alias", None)
        key = f"{alias} ({batch.owner_key_id})" if alias else batch.owner_key_id
        return f"{key}, team {batch.owner_team_id}" if batch.owner_team_id else key

    @admin.display(description="engines")
    def engines(self, batch: Batch) -> str:
        return ", ".join(dict.fromkeys(part.engine for part in batch.parts.all())) or "—"

    @admin.display(description="deployments")
    def deployments(self, batch: Batch) -> str:
        return ", ".join(dict.fromkeys(part.deployment_id for part in batch.parts.all())) or "—"

    @admin.display(description="progress")
    def progress(self, batch: Batch) -> str:
        completed, failed = live_counts(batch)
        return progress_bar(completed=completed, failed=failed, total=batch.total)

    @admin.display(description="output file")
    def output_download(self, batch: Batch) -> str:
        return _download_link(batch.output_file)

    @admin.display(description="error file")
    def error_download(self, batch: Batch) -> str:
        return _download_link(batch.error_file)

    @admin.display(description="cancel")
    def cancel_button(self, batch: Batch) -> str:
        if batch.status not in BATCH_ACTIVE:
            return "—"
        # The page's own form (with its CSRF token) posts to the cancel view: a nested form is not valid HTML.
        url = reverse("admin:batches_batch_cancel", args=[batch.pk])
        return format_html('<button type="submit" class="button" formaction="{}" formmethod="post">'
                           'Cancel this batch</button>', url)

    def get_urls(self):
        cancel = path("<path:object_id>/cancel/", self.admin_site.admin_view(self.cancel_view),
                      name="batches_batch_cancel")
        return [cancel, *super().get_urls()]

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only: cancel one batch, then back to its page with what happened."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = get_object_or_404(Batch, pk=object_id)
        if not self.has_view_permission(request, batch):
            return HttpResponse(status=403)
        self._cancel(request, batch)
        return HttpResponseRedirect(reverse("admin:batches_batch_change", args=[batch.pk]))

    @admin.action(description="Cancel the selected batches")
    def cancel_batches(self, request: HttpRequest, queryset) -> None:
        for batch in queryset:
            self._cancel(request, batch)

    def _cancel(self, request: HttpRequest, batch: Batch) -> None:
        try:
            cancelled = batch_services.batch_cancel(batch=batch)
        except GatewayError as error:
            self.message_user(request, f"Not cancelled: {error.message}", messages.WARNING)
            return
        self.message_user(request, f"Batch {batch.id} is now {cancelled.get_status_display().lower()}.",
                          messages.SUCCESS)


def _download_link(managed_file: ManagedFile | None) -> str:
    if managed_file is None:
        return "—"
    if managed_file.deleted_at is not None:
        return f"{managed_file.id} (deleted)"
    url = reverse("admin:files_registry_managedfile_content", args=[managed_file.pk])
    return format_html('<a href="{}">Download {} ({})</a>', url, managed_file.filename, managed_file.id)

