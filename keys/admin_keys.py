"""Admin for virtual keys and teams. Every write goes through the same services as the API.

A key issued (or rotated) here is shown once, on a page rendered straight from the POST that made it:
it is never put in a message, a cookie or the session, and never shown again. Digests never appear.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from keys.budgets import current_spends, limit_scope
from keys.durations import parse_duration
from keys.models import Team, VirtualKey
from keys.services import (
    IssuedKey,
    key_models_check,
    team_create,
    team_delete,
    team_update,
    virtual_key_block,
    virtual_key_delete,
    virtual_key_generate,
    virtual_key_regenerate,
    virtual_key_update,
)
from providers.errors import GatewayError

LIMIT_FIELDS = ("max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests")
# Form field -> the API's field name the services take.
KEY_API_NAMES = {"key_alias": "key_alias", "team": "team_id", "user_id": "user_id", "role": "role",
                 "allowed_models": "models", "aliases": "aliases", "max_budget": "max_budget",
                 "budget_duration": "budget_duration", "rpm_limit": "rpm_limit", "tpm_limit": "tpm_limit",
                 "max_parallel_requests": "max_parallel_requests", "expires": "expires", "metadata": "metadata",
                 "blocked": "blocked", "log_prompts": "log_prompts"}
TEAM_API_NAMES = {"team_alias": "team_alias", "allowed_models": "models", "max_budget": "max_budget",
                  "budget_duration": "budget_duration", "rpm_limit": "rpm_limit", "tpm_limit": "tpm_limit",
                  "max_parallel_requests": "max_parallel_requests", "metadata": "metadata", "blocked": "blocked"}


def _clean_duration(value: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            parse_duration(value)
        except ValueError:
            raise ValidationError("A duration such as 30s, 30m, 24h, 30d or 1mo.") from None
    return value


def _clean_model_list(value) -> list:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError('A JSON list of model group names, e.g. ["gpt-4o", "all-team-models"].')
    return value


def _clean_object(value) -> dict:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError("A JSON object.")
    return value


def _api_fields(form: forms.ModelForm, names: dict[str, str], *, only_changed: bool) -> dict:
    """The form's values under the API's names (the changed ones only, when editing)."""
    fields = {}
    for form_name, api_name in names.items():
        if form_name not in form.cleaned_data or (only_changed and form_name not in form.changed_data):
            continue
        value = form.cleaned_data[form_name]
        if form_name == "team":
            value = value.id if value is not None else None
        elif form_name in ("budget_duration", "key_alias", "user_id", "team_alias"):
            value = value or None
        fields[api_name] = value
    return fields


def _spend_columns(row, scope: str, label: str) -> tuple[float, float | None]:
    [spend] = current_spends([limit_scope(row, scope=scope, label=label)])
    return spend, (None if row.max_budget is None else max(0.0, row.max_budget - spend))


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("id", "team_alias", "allowed_models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit",
                  "max_parallel_requests", "metadata", "blocked")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "id" in self.fields:
            self.fields["id"].required = False
            self.fields["id"].help_text = "Public team id (team_id); a UUID is chosen when left blank."

    def clean_budget_duration(self) -> str:
        return _clean_duration(self.cleaned_data.get("budget_duration"))

    def clean_allowed_models(self) -> list:
        return _clean_model_list(self.cleaned_data.get("allowed_models"))

    def clean_metadata(self) -> dict:
        return _clean_object(self.cleaned_data.get("metadata"))


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ("id", "team_alias", "models_column", "spend_column", "budget_left_column", "rpm_limit",
                    "tpm_limit", "blocked", "created_at")
    list_filter = ("blocked",)
    search_fields = ("id", "team_alias")
    readonly_fields = ("spend", "budget_reset_at", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "id") if obj is not None else self.readonly_fields

    @admin.display(description="models")
    def models_column(self, team: Team) -> str:
        return ", ".join(team.allowed_models) or "all"

    @admin.display(description="spend (period)")
    def spend_column(self, team: Team) -> str:
        return f"${_spend_columns(team, 'team', team.team_alias or team.id)[0]:.4f}"

    @admin.display(description="budget left")
    def budget_left_column(self, team: Team) -> str:
        left = _spend_columns(team, "team", team.team_alias or team.id)[1]
        return "—" if left is None else f"${left:.4f}"

    def save_model(self, request, obj: Team, form, change: bool) -> None:
        if change:
            team_update(team=obj, fields=_api_fields(form, TEAM_API_NAMES, only_changed=True))
            return
        created = team_create(fields=_api_fields(form, TEAM_API_NAMES, only_changed=False),
                              team_id=form.cleaned_data.get("id") or None)
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at

    def get_deleted_objects(self, objs, request):
        """The team's keys go with it (as through the API), so they are listed as deleted, not as protected."""
        teams = list(objs)
        keys = list(VirtualKey.objects.filter(team__in=teams))
        deleted = [f"Team: {team}" for team in teams] + [f"Virtual key: {key}" for key in keys]
        counts = {"teams": len(teams), "virtual keys": len(keys)}
        perms_needed = set() if not keys or request.user.has_perm("keys.delete_virtualkey") else {"virtual key"}
        return deleted, counts, perms_needed, []

    def delete_model(self, request, obj: Team) -> None:
        team_delete(teams=[obj])

    def delete_queryset(self, request, queryset) -> None:
        team_delete(teams=list(queryset))


class VirtualKeyForm(forms.ModelForm):
    class Meta:
        model = VirtualKey
        fields = ("key_alias", "team", "user_id", "role", "allowed_models", "aliases", "max_budget",
                  "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests", "expires", "metadata",
                  "blocked", "log_prompts")
        labels = {"log_prompts": "Log prompts and answers"}

    def clean_budget_duration(self) -> str:
        return _clean_duration(self.cleaned_data.get("budget_duration"))

    def clean_allowed_models(self) -> list:
        return _clean_model_list(self.cleaned_data.get("allowed_models"))

    def clean_aliases(self) -> dict:
        value = self.cleaned_data.get("aliases")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict) or not all(isinstance(target, str) for target in value.values()):
            raise ValidationError('A JSON object mapping model names to groups, e.g. {"gpt-4": "my-group"}.')
        return value

    def clean_metadata(self) -> dict:
        return _clean_object(self.cleaned_data.get("metadata"))

    def clean_key_alias(self):
        return (self.cleaned_data.get("key_alias") or "").strip() or None

    def clean(self):
        cleaned = super().clean()
        try:
            key_models_check(cleaned.get("allowed_models") or [], cleaned.get("team"), cleaned.get("aliases"))
        except GatewayError as error:
            self.add_error("allowed_models", error.message)
        return cleaned


@admin.register(VirtualKey)
class VirtualKeyAdmin(admin.ModelAdmin):
    form = VirtualKeyForm
    change_form_template = "admin/keys/virtualkey/change_form.html"
    list_display = ("label_column", "key_name", "team", "user_id", "role", "spend_column", "budget_left_column",
                    "last_used_at", "blocked", "expires", "created_at")
    list_filter = ("blocked", "role", "log_prompts", "team")
    list_select_related = ("team",)
    search_fields = ("key_alias", "key_name", "id", "user_id", "team__team_alias")
    readonly_fields = ("id", "key_name", "spend", "budget_reset_at", "last_used_at", "created_at", "updated_at")
    actions = ("block_selected", "unblock_selected")

    @admin.display(description="key", ordering="key_alias")
    def label_column(self, key: VirtualKey) -> str:
        return key.key_alias or key.key_name

    @admin.display(description="spend (period)")
    def spend_column(self, key: VirtualKey) -> str:
        return f"${_spend_columns(key, 'key', key.key_alias or key.key_name)[0]:.4f}"

    @admin.display(description="budget left")
    def budget_left_column(self, key: VirtualKey) -> str:
        left = _spend_columns(key, "key", key.key_alias or key.key_name)[1]
        return "—" if left is None else f"${left:.4f}"

    # -- writes through the services ---------------------------------------------------------------
    def save_model(self, request, obj: VirtualKey, form, change: bool) -> None:
        if change:
            virtual_key_update(key=obj, fields=_api_fields(form, KEY_API_NAMES, only_changed=True))
            return
        issued = virtual_key_generate(fields=_api_fields(form, KEY_API_NAMES, only_changed=False))
        obj.pk, obj.key_name, obj.created_at = issued.key.pk, issued.key.key_name, issued.key.created_at
        request.gatehouse_issued_key = issued

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        issued = getattr(request, "gatehouse_issued_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        return self._issued_page(request, issued, "Key issued")

    def delete_model(self, request, obj: VirtualKey) -> None:
        virtual_key_delete(keys=[obj])

    def delete_queryset(self, request, queryset) -> None:
        virtual_key_delete(keys=list(queryset))

    @admin.action(description="Block selected keys", permissions=["change"])
    def block_selected(self, request, queryset) -> None:
        for key in queryset:
            virtual_key_block(key=key, blocked=True)
        self.message_user(request, f"Blocked {len(queryset)} key(s).", messages.SUCCESS)

    @admin.action(description="Unblock selected keys", permissions=["change"])
    def unblock_selected(self, request, queryset) -> None:
        for key in queryset:
            virtual_key_block(key=key, blocked=False)
        self.message_user(request, f"Unblocked {len(queryset)} key(s).", messages.SUCCESS)

    # -- buttons on the change page: POST-only views ---------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<str:object_id>/rotate/", view(self.rotate_view), name="keys_virtualkey_rotate"),
            path("<str:object_id>/block/", view(self.block_view), name="keys_virtualkey_block"),
            path("<str:object_id>/unblock/", view(self.unblock_view), name="keys_virtualkey_unblock"),
            *super().get_urls(),
        ]

    def _key_for_post(self, request: HttpRequest, object_id: str) -> VirtualKey:
        key = get_object_or_404(VirtualKey, pk=object_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        return key

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        issued = virtual_key_regenerate(key=self._key_for_post(request, object_id))
        return self._issued_page(request, issued, "Key rotated")

    def block_view(self, request: HttpRequest, object_id: str, blocked: bool = True) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = virtual_key_block(key=self._key_for_post(request, object_id), blocked=blocked)
        self.message_user(request, f"{'Blocked' if blocked else 'Unblocked'} {key}.", messages.SUCCESS)
        return redirect(reverse("admin:keys_virtualkey_change", args=[key.pk]))

    def unblock_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.block_view(request, object_id, blocked=False)

    def _issued_page(self, request: HttpRequest, issued: IssuedKey, title: str) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta,
                   "key": issued.key, "plaintext": issued.plaintext,
                   "change_url": reverse("admin:keys_virtualkey_change", args=[issued.key.pk])}
        response = TemplateResponse(request, "admin/keys/virtualkey/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response
