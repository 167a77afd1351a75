"""Admin for managed files: who owns what, where each copy lives, and the retry and delete actions.

Files and copies are written by the API and the workers only, so every field is read-only here.
Deleting (one file or a selection) runs the same service as `DELETE /v1/files/{id}`: provider copies
are deleted too. "Retry copies" gives every deployment of the file's groups a copy it is missing. The
stored bytes can be downloaded through an admin-only view.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from files_registry.choices import ProviderFileStatus
from files_registry.models import ManagedFile, ProviderFile
from files_registry.services import managed_file_delete, provider_copies_retry
from files_registry.storage import stored_bytes_open

FILE_FIELDS = ("id", "filename", "purpose", "bytes", "mime_type", "owner_key_id", "owner_team_id",
               "target_model_names", "stored_name", "status", "status_details", "created_at", "expires_at",
               "deleted_at")
COPY_FIELDS = ("deployment_id", "model_group", "provider", "status", "provider_file_id", "uri", "mime_type",
               "expires_at", "error", "attempts", "created_at", "uploaded_at", "updated_at", "deleted_at")


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return (("no", "Live"), ("yes", "Deleted (copies still being removed)"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class ProviderFileInline(admin.TabularInline):
    model = ProviderFile
    fields = ("deployment_id", "model_group", "provider", "status", "reference", "error", "attempts", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="provider reference")
    def reference(self, copy: ProviderFile) -> str:
        return copy.provider_file_id or copy.uri or "—"


@admin.register(ManagedFile)
class ManagedFileAdmin(admin.ModelAdmin):
    list_display = ("id", "filename", "owner", "purpose", "size", "status", "copies", "created_at", "deleted_at")
    list_filter = (DeletedFilter, "purpose", "status")
    search_fields = ("id", "filename", "owner_key_id", "owner_team_id")
    readonly_fields = (*FILE_FIELDS, "download")
    fields = readonly_fields
    inlines = [ProviderFileInline]
    actions = ["retry_copies"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        uploaded = Count("provider_copies", filter=Q(provider_copies__status=ProviderFileStatus.UPLOADED))
        failed = Count("provider_copies", filter=Q(provider_copies__status__in=(
            ProviderFileStatus.FAILED, ProviderFileStatus.DELETE_FAILED)))
        return super().get_queryset(request).annotate(copies_uploaded=uploaded, copies_failed=failed)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # written by the API and the workers only: the change page is a read-only view

    @admin.display(description="owner")
    def owner(self, managed_file: ManagedFile) -> str:
        key = managed_file.owner_key_id or "master key"
        return f"{key} (team {managed_file.owner_team_id})" if managed_file.owner_team_id else key

    @admin.display(description="size", ordering="bytes")
    def size(self, managed_file: ManagedFile) -> str:
        return filesizeformat(managed_file.bytes)

    @admin.display(description="copies")
    def copies(self, managed_file: ManagedFile) -> str:
        uploaded, failed = getattr(managed_file, "copies_uploaded", 0), getattr(managed_file, "copies_failed", 0)
        return f"{uploaded} uploaded, {failed} failed" if failed else f"{uploaded} uploaded"

    @admin.display(description="content")
    def download(self, managed_file: ManagedFile) -> str:
        if managed_file.deleted_at is not None:
            return "deleted"
        url = reverse("admin:files_registry_managedfile_content", args=[managed_file.pk])
        return format_html('<a href="{}">Download {}</a>', url, managed_file.filename)

    def get_urls(self):
        content = path("<path:object_id>/content/", self.admin_site.admin_view(self.content_view),
                       name="files_registry_managedfile_content")
        return [content, *super().get_urls()]

    def content_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The stored bytes, for an operator allowed to view files (the admin's login and permission checks)."""
        managed_file = get_object_or_404(ManagedFile, pk=object_id, deleted_at__isnull=True)
        if not self.has_view_permission(request, managed_file):
            return HttpResponse(status=403)
        return FileResponse(stored_bytes_open(managed_file.stored_name), content_type=managed_file.mime_type,
                            as_attachment=True, filename=managed_file.filename)

    @admin.action(description="Retry copies missing on deployments of the file's model groups")
    def retry_copies(self, request: HttpRequest, queryset) -> None:
        for managed_file in queryset.filter(deleted_at__isnull=True):
            results = provider_copies_retry(managed_file=managed_file)
            failed = {deployment: error for deployment, error in results.items() if error}
            if failed:
                details = "; ".join(f"{deployment}: {error}" for deployment, error in failed.items())
                self.message_user(request, f"Copies of {managed_file.id}: {len(results) - len(failed)} ready, "
                                           f"{len(failed)} failed ({details}).", messages.WARNING)
            else:
                self.message_user(request, f"Copies of {managed_file.id}: {len(results)} ready.", messages.SUCCESS)

    def get_deleted_objects(self, objs, request):
        """Copies go with their file (the service deletes them on the providers), so they are listed as
        deleted rather than as objects the operator lacks permission to delete."""
        files = list(objs)
        copies = list(ProviderFile.objects.filter(managed_file__in=files))
        deleted = [f"Managed file: {managed_file}" for managed_file in files] + [
            f"Provider copy: {copy} ({copy.get_status_display()})" for copy in copies]
        counts = {"managed files": len(files), "provider copies": len(copies)}
        return deleted, counts, set(), []

    def delete_model(self, request: HttpRequest, obj: ManagedFile) -> None:
        managed_file_delete(managed_file=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for managed_file in queryset:
            managed_file_delete(managed_file=managed_file)


@admin.register(ProviderFile)
class ProviderFileAdmin(admin.ModelAdmin):
    """Every copy on every deployment, to find the failed ones across files."""

    list_display = ("managed_file", "deployment_id", "model_group", "provider", "status", "attempts", "updated_at")
    list_filter = ("status", "provider", "model_group")
    search_fields = ("managed_file__id", "deployment_id", "provider_file_id", "uri")
    list_select_related = ("managed_file",)
    readonly_fields = ("managed_file", *COPY_FIELDS)
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
