"""The operator dashboard over HTTP: the admin index page with its canvases and app list, the staff-only JSON
endpoints (traffic, deployments, cooldowns, batches), their errors, and the vendored assets served offline."""
from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.utils import quote
from django.utils import timezone

from batches.choices import BatchStatus, Engine, PartStatus
from batches.models import Batch, BatchPart
from files_registry.choices import FilePurpose
from files_registry.services import managed_file_create
from keys.choices import RollupSpan
from keys.latency import LATENCY_COLUMNS
from keys.models import DeploymentRollup, UsageRollup
from models_registry.cooldowns import cooldown_start
from models_registry.snapshot import forget_snapshot
from tests.files_registry.support import file_storage  # noqa: F401 - the fixture, used by name
from tests.keys.spend_support import make_key, make_team

pytestmark = pytest.mark.django_db

TRAFFIC = "/admin/dashboard/traffic.json"
DEPLOYMENTS = "/admin/dashboard/deployments.json"
COOLDOWNS = "/admin/dashboard/cooldowns.json"
BATCHES = "/admin/dashboard/batches.json"
ENDPOINTS = (TRAFFIC, DEPLOYMENTS, COOLDOWNS, BATCHES)
REGISTRY = {"model_list": [
    {"model_name": "chat", "litellm_params": {"model": "mock/chat-model"}, "model_info": {"id": "chat-a"}},
    {"model_name": "chat", "litellm_params": {"model": "mock/chat-model"}, "model_info": {"id": "chat-b"}},
    {"model_name": "embed", "litellm_params": {"model": "mock/embedding-model"}, "model_info": {"id": "embed-1"}},
]}


@pytest.fixture(autouse=True)
def _no_cached_registry():
    forget_snapshot()
    yield
    forget_snapshot()


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def minute_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def get_json(client, url: str, status: int = 200) -> dict:
    response = client.get(url)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


# -- the page ---------------------------------------------------------------------------------------

def test_the_admin_index_shows_the_dashboard_above_the_app_list(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    for chart in ("requests", "spend", "tokens"):
        assert f'<canvas data-chart="{chart}"' in html
    for range_name in ("hour", "day", "30d"):
        assert f'data-range="{range_name}"' in html
    for element_id in ("top-keys", "deployment-health", "cooldowns", "batches-in-progress"):
        assert f'id="{element_id}"' in html
    assert 'data-traffic-url="/admin/dashboard/traffic.json"' in html
    assert 'data-batches-url="/admin/dashboard/batches.json"' in html
    assert '<script src="/static/gateway/vendor/chart.umd.min.js" defer></script>' in html
    # Chart.js first, then the panels, then the dashboard that uses both (deferred scripts run in order).
    assert html.index("/static/gateway/vendor/chart.umd.min.js") < html.index(
        '<script src="/static/gateway/dashboard_panels.js" defer></script>') < html.index(
        '<script src="/static/gateway/dashboard.js" defer></script>')
    assert '<link rel="stylesheet" href="/static/gateway/dashboard.css">' in html
    # The app list and recent actions are still there, below the dashboard.
    assert html.index('id="gatehouse-dashboard"') < html.index('id="content-main"') < html.index(
        'id="recent-actions-module"')
    assert 'href="/admin/keys/virtualkey/"' in html and 'href="/admin/batches/batch/"' in html
    assert "cdn" not in html.lower()


def test_an_app_index_has_no_dashboard(staff_client):
    response = staff_client.get("/admin/keys/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/admin/keys/virtualkey/"' in html
    assert "gatehouse-dashboard" not in html and "chart.umd.min.js" not in html and "data-chart" not in html


@pytest.mark.parametrize(("path", "marker"), [
    ("/static/gateway/vendor/chart.umd.min.js", b"Chart.js v4."),
    ("/static/gateway/vendor/chart.js.LICENSE.md", b"The MIT License"),
    ("/static/gateway/dashboard.js", b'data-drawn'),
    ("/static/gateway/dashboard_panels.js", b"window.GatehouseDashboardPanels"),
    ("/static/gateway/dashboard.css", b"--body-bg"),
])
def test_the_dashboard_assets_are_served_from_the_package(client, path, marker):
    response = client.get(path)
    assert response.status_code == 200
    assert marker in b"".join(response.streaming_content)


# -- who may read -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin/", *ENDPOINTS])
def test_anonymous_visitors_are_sent_to_the_admin_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_logged_in_user_who_is_not_staff_is_sent_to_the_login_too(client, django_user_model, path):
    client.force_login(django_user_model.objects.create_user("developer", "developer@example.com", "pw"))
    response = client.get(f"{path}?range=day")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}%3Frange%3Dday"


@pytest.mark.parametrize("path", [TRAFFIC, DEPLOYMENTS])
@pytest.mark.parametrize("value", ["week", "HOUR", "1h"])
def test_an_unknown_range_is_a_400_envelope(staff_client, path, value):
    body = get_json(staff_client, f"{path}?range={value}", status=400)
    assert body == {"error": {"message": f"range must be one of hour, day, 30d; got '{value}'.",
                              "type": "invalid_request_error", "param": "range", "code": "invalid_value"}}


def test_an_id_filter_longer_than_any_id_is_a_400_envelope(staff_client):
    body = get_json(staff_client, f"{TRAFFIC}?range=hour&team_id={'t' * 65}", status=400)
    assert body == {"error": {"message": "team_id must be at most 64 characters.", "type": "invalid_request_error",
                              "param": "team_id", "code": "invalid_value"}}


def test_writes_are_refused_with_a_405_envelope(staff_client):
    response = staff_client.post(TRAFFIC, {"range": "day"})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_without_a_range_the_endpoints_show_the_last_day(staff_client):
    assert get_json(staff_client, TRAFFIC)["range"] == "day"
    assert get_json(staff_client, DEPLOYMENTS)["range"] == "day"


# -- what they answer --------------------------------------------------------------------------------

def test_traffic_for_the_last_hour_is_zero_filled_per_group_with_totals_and_top_keys(staff_client):
    make_key("key-ops", key_alias="ops-bot", team=make_team("team-ops"))
    before = minute_floor(timezone.now())
    recent, older = before - timedelta(minutes=2), before - timedelta(minutes=20)
    for start, key_id, team_id, group, requests, errors, cost in (
        (recent, "key-ops", "team-ops", "chat", 3, 1, 0.5),
        (older, "key-ops", "team-ops", "chat", 2, 0, 0.25),
        (recent, "key-etl", "team-etl", "embed", 8, 0, 0.125),
        (before - timedelta(hours=3), "key-ops", "team-ops", "chat", 100, 100, 50.0),  # outside the hour
    ):
        UsageRollup.objects.create(span=RollupSpan.MINUTE, start=start, key_id=key_id, team_id=team_id,
                                   model_group=group, requests=requests, errors=errors, prompt_tokens=requests * 10,
                                   completion_tokens=requests, cost=cost)

    body = get_json(staff_client, f"{TRAFFIC}?range=hour")
    after = minute_floor(timezone.now())

    labels = body["labels"]
    assert len(labels) == 60 and labels[-1] in {iso(before), iso(after)}
    assert labels == [iso(datetime.strptime(labels[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                          + timedelta(minutes=index)) for index in range(60)]

    def at(values: dict[datetime, float]) -> list:
        return [values.get(label, 0) for label in labels]

    assert body["series"] == [
        {"model_group": "embed", "requests": at({iso(recent): 8}), "errors": at({}), "cost": at({iso(recent): 0.125}),
         "tokens": at({iso(recent): 88})},
        {"model_group": "chat", "requests": at({iso(recent): 3, iso(older): 2}), "errors": at({iso(recent): 1}),
         "cost": at({iso(recent): 0.5, iso(older): 0.25}), "tokens": at({iso(recent): 33, iso(older): 22})},
    ]
    assert body["totals"] == {"requests": 13, "errors": 1, "cost": 0.875, "prompt_tokens": 130,
                              "completion_tokens": 13, "tokens": 143, "error_rate": 0.0769}
    assert body["top_keys"] == [
        {"key_id": "key-ops", "key_alias": "ops-bot", "team_id": "team-ops", "master_key": False, "requests": 5,
         "errors": 1, "tokens": 55, "cost": 0.75, "admin_url": "/admin/keys/virtualkey/key-ops/change/"},
        {"key_id": "key-etl", "key_alias": None, "team_id": None, "master_key": False, "requests": 8, "errors": 0,
         "tokens": 88, "cost": 0.125, "admin_url": None},
    ]
    assert body["filters"] == {"key_id": None, "team_id": None}


def test_traffic_filters_by_key_or_team(staff_client):
    hour = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for key_id, team_id, requests in (("key-a", "team-1", 1), ("key-b", "team-1", 2), ("key-c", "team-2", 4)):
        UsageRollup.objects.create(span=RollupSpan.HOUR, start=hour - timedelta(hours=1), key_id=key_id,
                                   team_id=team_id, model_group="chat", requests=requests, cost=float(requests))

    team = get_json(staff_client, f"{TRAFFIC}?range=day&team_id=team-1")
    key = get_json(staff_client, f"{TRAFFIC}?range=day&key_id=key-c&team_id=")

    assert team["filters"] == {"key_id": None, "team_id": "team-1"}
    assert (team["totals"]["requests"], team["totals"]["cost"]) == (3, 3.0)
    assert [row["key_id"] for row in team["top_keys"]] == ["key-b", "key-a"]
    assert key["filters"] == {"key_id": "key-c", "team_id": None}
    assert (key["totals"]["requests"], [row["key_id"] for row in key["top_keys"]]) == (4, ["key-c"])


def test_deployments_show_error_rate_and_percentiles_and_which_one_is_cooling_down(staff_client, configure_gateway):
    configure_gateway(REGISTRY)
    cooldown_start("chat-b", seconds=45, reason="health check failed")
    counts = dict.fromkeys(LATENCY_COLUMNS, 0)
    counts["latency_le_250"] = 10  # 100-250 ms
    counts["latency_le_1000"] = 10  # 500-1000 ms
    DeploymentRollup.objects.create(span=RollupSpan.MINUTE, start=minute_floor(timezone.now()) - timedelta(minutes=1),
                                    deployment_id="chat-a", model_group="chat", requests=20, errors=5,
                                    latency_ms_total=9000.0, **counts)

    body = get_json(staff_client, f"{DEPLOYMENTS}?range=hour")

    rows = {row["deployment_id"]: row for row in body["deployments"]}
    assert [row["deployment_id"] for row in body["deployments"]] == ["chat-a", "chat-b", "embed-1"]
    assert rows["chat-a"] == {
        "deployment_id": "chat-a", "model_group": "chat", "provider": "mock", "in_registry": True, "requests": 20,
        "errors": 5, "error_rate": 0.25, "latency_mean_ms": 450.0, "latency_p50_ms": 250.0,
        "latency_p95_ms": 950.0, "cooldown_seconds": None,
        "admin_url": "/admin/models_registry/deployment/chat-a/change/"}
    assert 44.0 <= rows["chat-b"]["cooldown_seconds"] <= 45.0
    assert (rows["chat-b"]["requests"], rows["chat-b"]["latency_p95_ms"]) == (0, None)
    assert rows["embed-1"]["cooldown_seconds"] is None


def test_cooldowns_list_the_deployments_out_of_rotation_longest_first(staff_client, configure_gateway):
    configure_gateway(REGISTRY)
    assert get_json(staff_client, COOLDOWNS) == {"cooldowns": []}
    cooldown_start("chat-a", seconds=20, reason="429 from upstream")
    cooldown_start("embed-1", seconds=120, reason="health check failed")
    cooldown_start("not-in-the-registry", seconds=60, reason="a deployment since removed")

    cooling = get_json(staff_client, COOLDOWNS)["cooldowns"]

    seconds = [row.pop("seconds_left") for row in cooling]
    assert cooling == [{"deployment_id": "embed-1", "model_group": "embed", "provider": "mock"},
                       {"deployment_id": "chat-a", "model_group": "chat", "provider": "mock"}]
    assert 119.0 <= seconds[0] <= 120.0 and 19.0 <= seconds[1] <= 20.0


@pytest.fixture
def batches(file_storage) -> dict[str, Batch]:  # noqa: F811 - the fixture imported above
    """A running batch (a native part whose provider reports more than is recorded, and a gateway part), a newer
    one still validating, and a finished one."""
    now = timezone.now()
    data = b'{"custom_id": "a"}\n'
    input_file = managed_file_create(owner_key_id="", owner_team_id="", content=io.BytesIO(data), size=len(data),
                                     filename="requests.jsonl", mime_type="application/jsonl",
                                     purpose=FilePurpose.BATCH, target_model_names=[])

    def batch(status: str, minutes_ago: int, **fields) -> Batch:
        return Batch.objects.create(input_file=input_file, endpoint="/v1/chat/completions", completion_window="24h",
                                    status=status, created_at=now - timedelta(minutes=minutes_ago),
                                    expires_at=now + timedelta(hours=24), **fields)

    running = batch(BatchStatus.IN_PROGRESS, 10, requested_model="chat", model_group="chat", total=20, completed=3,
                    failed=1, owner_key_id="key-ops", owner_team_id="team-ops")
    BatchPart.objects.create(batch=running, index=0, deployment_id="chat-a", model_group="chat", provider="openai",
                             engine=Engine.NATIVE, first_line=0, line_count=10, status=PartStatus.RUNNING,
                             provider_completed=6, provider_failed=1)
    BatchPart.objects.create(batch=running, index=1, deployment_id="chat-b", model_group="chat", provider="mock",
                             engine=Engine.GATEWAY, first_line=10, line_count=10, status=PartStatus.RUNNING,
                             completed=3, failed=1)
    validating = batch(BatchStatus.VALIDATING, 1)
    done = batch(BatchStatus.COMPLETED, 5, model_group="chat", total=2, completed=2)
    return {"running": running, "validating": validating, "done": done}


def test_batches_in_progress_are_newest_first_with_live_progress(staff_client, batches,
                                                                 django_assert_max_num_queries):
    running, validating = batches["running"], batches["validating"]
    assert quote(running.id).startswith("batch_5F")  # the admin's own escaping of "_" in a primary key
    with django_assert_max_num_queries(4):  # session, user, the batches, their running native parts
        body = get_json(staff_client, BATCHES)
    assert body == {"batches": [
        {"id": validating.id, "status": "validating", "endpoint": "/v1/chat/completions", "model": None,
         "owner_key_id": None, "owner_team_id": None, "created_at": iso(validating.created_at.astimezone(UTC)),
         "total": 0, "completed": 0, "failed": 0, "percent": None,
         "admin_url": f"/admin/batches/batch/{quote(validating.id)}/change/"},
        # Recorded 3 + 1, plus the native part's provider counts (6 completed, 1 failed): 11 of 20 lines over.
        {"id": running.id, "status": "in_progress", "endpoint": "/v1/chat/completions", "model": "chat",
         "owner_key_id": "key-ops", "owner_team_id": "team-ops", "created_at": iso(running.created_at.astimezone(UTC)),
         "total": 20, "completed": 9, "failed": 2, "percent": 55.0,
         "admin_url": f"/admin/batches/batch/{quote(running.id)}/change/"},
    ]}


def test_batch_admin_links_open_the_batch_page(staff_client, batches):
    url = get_json(staff_client, BATCHES)["batches"][1]["admin_url"]
    response = staff_client.get(url)
    assert response.status_code == 200
    assert batches["running"].id in response.content.decode()
