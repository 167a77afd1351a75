"""Key management (LiteLLM's `/key/*` routes): the master key or a proxy_admin key only, except that any
key may read its own `/key/info`."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from keys.durations import duration_or_error
from keys.fields import KeyFields, custom_plaintext, flag, identifier_list, key_fields
from keys.models import VirtualKey
from keys.presenters import key_info, key_issued
from keys.selectors import virtual_key_find, virtual_key_get, virtual_key_list, virtual_key_list_by_alias
from keys.services import (
    virtual_key_block,
    virtual_key_delete,
    virtual_key_generate,
    virtual_key_regenerate,
    virtual_key_update,
)
from keys.tokens import looks_like_plaintext
from providers.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from proxy_api import openapi
from proxy_api.auth import authenticate, presented_key, require_admin
from proxy_api.openapi_keys import ERRORS_MANAGEMENT, ERRORS_MANAGEMENT_LOOKUP, query
from proxy_api.rendering import json_response
from proxy_api.validation import read_json_object
from proxy_api.views.base import GatewayView

TAG = "Keys"
MAX_PAGE_SIZE = 100


def _admin_body(request: HttpRequest, route: str) -> dict:
    require_admin(authenticate(request), route)
    return read_json_object(request)


def _key_fields(body: dict, *, update: bool = False) -> KeyFields:
    """The key fields the request names, with `log_prompts` (true or false; `null` means not given)."""
    fields = key_fields(body, update=update)
    if body.get("log_prompts") is not None:
        fields["log_prompts"] = flag(body["log_prompts"], "log_prompts")
    return fields


def _key_named(body: dict, param: str = "key") -> VirtualKey:
    value = body.get(param)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"'{param}' is required: the key's plaintext or its token.", param=param,
                                  code="missing_required_parameter")
    return virtual_key_get(value, param=param)


def _grace_seconds(body: dict) -> float:
    value = body.get("grace_period")
    if value is None:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return float(duration_or_error(value, param="grace_period").approximate_seconds)


class KeyGenerateView(GatewayView):
    @extend_schema(operation_id="key_generate", tags=[TAG], summary="Issue a virtual key",
                   description="The plaintext `key` is in this answer only; Gatehouse keeps a keyed digest.",
                   request=openapi.json_body("KeyGenerateRequest"),
                   responses={200: openapi.ref("KeyGenerateResponse"), **ERRORS_MANAGEMENT})
    def post(self, request) -> HttpResponse:
        body = _admin_body(request, "/key/generate")
        fields = _key_fields(body)
        plaintext = custom_plaintext(body["key"]) if body.get("key") is not None else None
        issued = virtual_key_generate(fields=fields, plaintext=plaintext)
        return json_response(key_issued(issued.key, issued.plaintext))


class KeyInfoView(GatewayView):
    @extend_schema(operation_id="key_info", tags=[TAG], summary="Read a key",
                   description="Without `key`, the calling key's own info. A key that is not an admin may read "
                               "only its own.",
                   parameters=[query("key", str, "The key's plaintext or its token.")],
                   responses={200: openapi.ref("KeyInfoResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def get(self, request) -> HttpResponse:
        caller = authenticate(request)
        value = request.GET.get("key")
        if not value:
            if caller.key is None:
                raise InvalidRequestError("The master key has no key info; pass ?key=<key or token>.",
                                          param="key", code="missing_required_parameter")
            value = caller.key.id
        elif not caller.is_admin:
            own = value == presented_key(request) if looks_like_plaintext(value) else value == caller.key.id
            if not own:
                raise PermissionDeniedError("A key may read only its own info.", param="key", code="admin_only")
        row = virtual_key_get(value)
        return json_response({"key": row.id, "info": key_info(row)})


class KeyUpdateView(GatewayView):
    @extend_schema(operation_id="key_update", tags=[TAG], summary="Change a key",
                   request=openapi.json_body("KeyUpdateRequest"),
                   responses={200: openapi.ref("KeyUpdateResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        body = _admin_body(request, "/key/update")
        key = _key_named(body)
        updated = virtual_key_update(key=key, fields=_key_fields(body, update=True))
        return json_response({**key_info(updated), "key": updated.id})


class KeyDeleteView(GatewayView):
    @extend_schema(operation_id="key_delete", tags=[TAG], summary="Revoke keys",
                   description="By `keys` (plaintexts or tokens) or by `key_aliases`; all or nothing.",
                   request=openapi.json_body("KeyDeleteRequest"),
                   responses={200: openapi.ref("KeyDeleteResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        body = _admin_body(request, "/key/delete")
        values = identifier_list(body, "keys")
        aliases = identifier_list(body, "key_aliases")
        if (values is None) == (aliases is None):
            raise InvalidRequestError("Give exactly one of 'keys' and 'key_aliases'.", param="keys",
                                      code="missing_required_parameter")
        if values is not None:
            found = {value: virtual_key_find(value) for value in values}
            missing, param = [value for value, row in found.items() if row is None], "keys"
            rows = [row for row in found.values() if row is not None]
        else:
            rows = virtual_key_list_by_alias(aliases)
            known = {row.key_alias for row in rows}
            missing, param = [alias for alias in aliases if alias not in known], "key_aliases"
        if missing:
            shown = [value if param == "key_aliases" or not looks_like_plaintext(value) else "sk-..." + value[-4:]
                     for value in missing]
            raise NotFoundError(f"No key matches: {', '.join(shown)}. Nothing was deleted.", param=param,
                                code="key_not_found")
        virtual_key_delete(keys=list({row.id: row for row in rows}.values()))
        return json_response({"deleted_keys": values if values is not None else aliases})


class KeyListView(GatewayView):
    @extend_schema(operation_id="key_list", tags=[TAG], summary="List keys",
                   parameters=[
                       query("page", int, "Page number, from 1."),
                       query("size", int, f"Keys per page, 1 to {MAX_PAGE_SIZE} (default 10)."),
                       query("team_id", str, "Only this team's keys."),
                       query("key_alias", str, "Only the key with this alias."),
                       query("user_id", str, "Only this user's keys."),
                       query("return_full_object", bool, "Whole keys instead of their tokens."),
                   ],
                   responses={200: openapi.ref("KeyListResponse"), **ERRORS_MANAGEMENT})
    def get(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/key/list")
        params = request.GET
        page = _positive_int(params.get("page"), "page", default=1)
        size = _positive_int(params.get("size"), "size", default=10)
        if size > MAX_PAGE_SIZE:
            raise InvalidRequestError(f"'size' must be at most {MAX_PAGE_SIZE}.", param="size", code="invalid_value")
        keys = virtual_key_list(team_id=params.get("team_id"), key_alias=params.get("key_alias"),
                                user_id=params.get("user_id"))
        total = keys.count()
        rows = keys[(page - 1) * size: page * size]
        full = params.get("return_full_object", "").lower() in ("true", "1", "yes")
        return json_response({
            "keys": [key_info(row) for row in rows] if full else [row.id for row in rows],
            "total_count": total, "current_page": page, "total_pages": (total + size - 1) // size,
        })


def _positive_int(value: str | None, param: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequestError(f"'{param}' must be a whole number, 1 or more.", param=param, code="invalid_value")
    return int(value)


def _regenerate(body: dict, key: VirtualKey) -> HttpResponse:
    new_key = custom_plaintext(body["new_key"], "new_key") if body.get("new_key") is not None else None
    issued = virtual_key_regenerate(key=key, fields=_key_fields(body), plaintext=new_key,
                                    grace_seconds=_grace_seconds(body))
    return json_response(key_issued(issued.key, issued.plaintext))


class KeyRegenerateView(GatewayView):
    @extend_schema(operation_id="key_regenerate", tags=[TAG], summary="Give a key a new secret",
                   description="Same token, settings and spend; the old secret stops working now, or after "
                               "`grace_period`. The new plaintext is in this answer only.",
                   request=openapi.json_body("KeyRegenerateRequest"),
                   responses={200: openapi.ref("KeyGenerateResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        body = _admin_body(request, "/key/regenerate")
        return _regenerate(body, _key_named(body))


class KeyRegenerateByPathView(GatewayView):
    @extend_schema(operation_id="key_regenerate_by_path", tags=[TAG], summary="Give a key a new secret",
                   description="`/key/regenerate` with the key in the path, as LiteLLM also accepts.",
                   parameters=[OpenApiParameter("key", str, OpenApiParameter.PATH,
                                                description="The key's plaintext or its token.")],
                   request=openapi.json_body("KeyRegenerateByPathRequest"),
                   responses={200: openapi.ref("KeyGenerateResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request, key: str) -> HttpResponse:
        require_admin(authenticate(request), "/key/regenerate")
        body = read_json_object(request) if request.body else {}
        return _regenerate(body, virtual_key_get(key))


class KeyBlockView(GatewayView):
    blocked = True

    @extend_schema(operation_id="key_block", tags=[TAG], summary="Block a key",
                   description="Every request with the key gets 401 within a second, on every worker.",
                   request=openapi.json_body("KeyReference"),
                   responses={200: openapi.ref("KeyInfo"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        body = _admin_body(request, request.path)
        key = virtual_key_block(key=_key_named(body), blocked=self.blocked)
        return json_response(key_info(key))


class KeyUnblockView(KeyBlockView):
    blocked = False

    @extend_schema(operation_id="key_unblock", tags=[TAG], summary="Unblock a key",
                   request=openapi.json_body("KeyReference"),
                   responses={200: openapi.ref("KeyInfo"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        return super().post(request)
