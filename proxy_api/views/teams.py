"""Team management (LiteLLM's `/team/*` routes): the master key or a proxy_admin key only."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from keys.fields import identifier_list, required_text, team_fields
from keys.presenters import key_info, team_info
from keys.selectors import team_find, team_get, team_keys, team_list
from keys.services import team_create, team_delete, team_update
from providers.errors import InvalidRequestError, NotFoundError
from proxy_api import openapi
from proxy_api.auth import authenticate, require_admin
from proxy_api.openapi_keys import ERRORS_MANAGEMENT, ERRORS_MANAGEMENT_LOOKUP, query
from proxy_api.rendering import json_response
from proxy_api.validation import read_json_object
from proxy_api.views.base import GatewayView

TAG = "Teams"


def _team_id(value, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if value is None:
        raise InvalidRequestError("'team_id' is required.", param="team_id", code="missing_required_parameter")
    return required_text(value, "team_id")


class TeamNewView(GatewayView):
    @extend_schema(operation_id="team_new", tags=[TAG], summary="Create a team",
                   description="A team's models, budget and limits cap every key of the team.",
                   request=openapi.json_body("TeamNewRequest"),
                   responses={200: openapi.ref("Team"), **ERRORS_MANAGEMENT})
    def post(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/team/new")
        body = read_json_object(request)
        team = team_create(fields=team_fields(body), team_id=_team_id(body.get("team_id"), required=False))
        return json_response(team_info(team))


class TeamInfoView(GatewayView):
    @extend_schema(operation_id="team_info", tags=[TAG], summary="Read a team and its keys",
                   parameters=[query("team_id", str, "The team's id.", required=True)],
                   responses={200: openapi.ref("TeamInfoResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def get(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/team/info")
        team = team_get(_team_id(request.GET.get("team_id"), required=True))
        return json_response({"team_id": team.id, "team_info": team_info(team),
                              "keys": [key_info(key) for key in team_keys(team)]})


class TeamUpdateView(GatewayView):
    @extend_schema(operation_id="team_update", tags=[TAG], summary="Change a team",
                   description="Only the fields given change; narrowing applies to every key of the team at once.",
                   request=openapi.json_body("TeamUpdateRequest"),
                   responses={200: openapi.ref("TeamUpdateResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/team/update")
        body = read_json_object(request)
        team = team_get(_team_id(body.get("team_id"), required=True))
        team = team_update(team=team, fields=team_fields(body))
        return json_response({"team_id": team.id, "data": team_info(team)})


class TeamDeleteView(GatewayView):
    @extend_schema(operation_id="team_delete", tags=[TAG], summary="Delete teams and their keys",
                   description="As in LiteLLM, the teams' keys are deleted with them. All or nothing.",
                   request=openapi.json_body("TeamDeleteRequest"),
                   responses={200: openapi.ref("TeamDeleteResponse"), **ERRORS_MANAGEMENT_LOOKUP})
    def post(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/team/delete")
        body = read_json_object(request)
        team_ids = identifier_list(body, "team_ids")
        if team_ids is None:
            raise InvalidRequestError("'team_ids' is required.", param="team_ids", code="missing_required_parameter")
        teams = {team_id: team_find(team_id) for team_id in team_ids}
        missing = [team_id for team_id, team in teams.items() if team is None]
        if missing:
            raise NotFoundError(f"No such team: {', '.join(missing)}. Nothing was deleted.", param="team_ids",
                                code="team_not_found")
        return json_response({"deleted_teams": team_delete(teams=list(teams.values()))})


class TeamListView(GatewayView):
    @extend_schema(operation_id="team_list", tags=[TAG], summary="List teams",
                   parameters=[query("team_alias", str, "Only teams with this alias.")],
                   responses={200: openapi.ref("TeamList"), **ERRORS_MANAGEMENT})
    def get(self, request) -> HttpResponse:
        require_admin(authenticate(request), "/team/list")
        return json_response([team_info(team) for team in team_list(team_alias=request.GET.get("team_alias"))])
