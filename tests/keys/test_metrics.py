"""Prometheus metrics in one process: finished requests counted per label set from the log buffer's records
(once each, whatever the database does), the in-flight count, cooldowns read at scrape time, batch lines
counted on commit, and `GET /metrics` itself (auth, content type, the text format).

Counters here are the process's default registry, shared by every test: each test reads values before and
after, or uses label values no other test uses."""
from __future__ import annotations

import secrets

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from batches.metrics import batch_lines_count, metrics_address
from keys import log_buffer
from keys.choices import RequestStatus
from keys.metrics import (
    CONTENT_TYPE,
    DURATION_BUCKETS_SECONDS,
    NO_MODEL_GROUP,
    histogram_add,
    in_flight_count,
    usage_records_observe,
)
from keys.models import RequestLog
from models_registry.cooldowns import cooldown_start
from tests.keys.spend_support import record
from tests.keys.support import MASTER, bearer, generate
from tests.proxy_api.helpers import envelope, error_body, post_json
from tests.support.polling import wait_until

pytestmark = pytest.mark.django_db

USER = [{"role": "user", "content": "hi"}]
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;"
                     "q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def page_samples(response) -> dict[tuple, float]:
    """Every sample of a metrics page, keyed by (name, sorted labels)."""
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture(autouse=True)
def _empty_buffer():
    log_buffer.pending_discard()
    yield
    log_buffer.pending_discard()


@pytest.fixture
def metered(configure_gateway, fake_openai):
    """Two groups on the loopback fake with fixed ids: `metered` (one deployment) and `pair` (two)."""
    api_base = f"{fake_openai.url}/v1"

    def entry(group: str, deployment_id: str) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id, "input_cost_per_token": 1e-06,
                                                   "output_cost_per_token": 2e-06},
                "litellm_params": {"model": "openai/house-model", "api_base": api_base, "api_key": "sk-upstream"}}

    configure_gateway({"model_list": [entry("metered", "metered-1"), entry("pair", "pair-a"),
                                      entry("pair", "pair-b")]})
    return fake_openai


# -- observing records --

def test_records_are_counted_per_label_set():
    group, deployment = unique("grp"), unique("dep")
    ok = {"model_group": group, "deployment_id": deployment, "prompt_tokens": 11, "completion_tokens": 7,
          "cost": 0.25}
    records = [
        record(**ok, latency_ms=120.0),
        record(**ok, latency_ms=300.0),
        record(**ok, latency_ms=2000.0),
        record(**ok, latency_ms=900.0, streamed=True, time_to_first_token_ms=250.0),
        record(model_group=group, deployment_id=deployment, status=RequestStatus.ERROR, status_code=502,
               error_type="api_error", latency_ms=40.0),
        record(model_group=group, deployment_id=deployment, operation="embeddings", status_code=499,
               status=RequestStatus.CLIENT_DISCONNECTED, error_type="client_disconnected", latency_ms=75000.0),
    ]

    assert usage_records_observe(records) == 6

    pair = {"model_group": group, "deployment": deployment}
    assert value("gatehouse_requests_total", operation="chat", status="200", **pair) == 4
    assert value("gatehouse_requests_total", operation="chat", status="502", **pair) == 1
    assert value("gatehouse_requests_total", operation="embeddings", status="499", **pair) == 1
    assert value("gatehouse_request_errors_total", error_type="api_error", **pair) == 1
    assert value("gatehouse_request_errors_total", error_type="client_disconnected", **pair) == 1
    assert value("gatehouse_request_duration_seconds_count", **pair) == 6
    assert value("gatehouse_request_duration_seconds_sum", **pair) == pytest.approx(78.36)
    cumulative = {bound: value("gatehouse_request_duration_seconds_bucket", le=bound, **pair)
                  for bound in ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "60.0", "+Inf")}
    assert cumulative == {"0.05": 1, "0.1": 1, "0.25": 2, "0.5": 3, "1.0": 4, "2.5": 5, "60.0": 5, "+Inf": 6}
    assert value("gatehouse_time_to_first_token_seconds_count", **pair) == 1
    assert value("gatehouse_time_to_first_token_seconds_sum", **pair) == 0.25
    assert value("gatehouse_time_to_first_token_seconds_bucket", le="0.1", **pair) == 0
    assert value("gatehouse_time_to_first_token_seconds_bucket", le="0.25", **pair) == 1
    assert value("gatehouse_tokens_total", model_group=group, type="prompt") == 44
    assert value("gatehouse_tokens_total", model_group=group, type="completion") == 28
    assert value("gatehouse_spend_usd_total", model_group=group) == 1.0


def test_a_model_group_the_registry_does_not_know_never_becomes_a_label(metered):
    """A refused request names whatever model it likes: only groups the registry serves are label values."""
    made_up = unique("made-up-model")
    before = {status: value("gatehouse_requests_total", operation="chat", model_group=NO_MODEL_GROUP, deployment="",
                            status=status) for status in ("404", "429")}
    limited = value("gatehouse_requests_total", operation="chat", model_group="metered", deployment="", status="429")

    usage_records_observe([
        record(model_group=made_up, deployment_id="", status=RequestStatus.ERROR, status_code=404,
               error_type="invalid_request_error"),
        record(model_group="metered", deployment_id="", status=RequestStatus.ERROR, status_code=429,
               error_type="rate_limit_error"),
    ])

    assert REGISTRY.get_sample_value("gatehouse_requests_total", {
        "operation": "chat", "model_group": made_up, "deployment": "", "status": "404"}) is None
    assert value("gatehouse_requests_total", operation="chat", model_group=NO_MODEL_GROUP, deployment="",
                 status="404") == before["404"] + 1
    assert value("gatehouse_requests_total", operation="chat", model_group="metered", deployment="",
                 status="429") == limited + 1


def test_adding_a_ticks_values_at_once_equals_observing_each():
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 59.9, 60.0, 61.0, 1000.0, 0.3]
    at_once, each = CollectorRegistry(), CollectorRegistry()
    histogram_add(Histogram("h_seconds", "h", ["g"], buckets=DURATION_BUCKETS_SECONDS, registry=at_once).labels("x"),
                  values, DURATION_BUCKETS_SECONDS)
    one_by_one = Histogram("h_seconds", "h", ["g"], buckets=DURATION_BUCKETS_SECONDS, registry=each).labels("x")
    for item in values:
        one_by_one.observe(item)

    def samples(registry):
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for family in registry.collect()
                      for s in family.samples if not s.name.endswith("_created"))

    assert samples(at_once) == samples(each)
    assert len(samples(each)) == len(DURATION_BUCKETS_SECONDS) + 3  # every bucket, +Inf, count, sum


def test_each_record_is_counted_once_while_the_database_fails_and_after():
    """The metrics queue is drained before the write: a write that fails and re-queues its rows does not
    count them again, and the rows written later are not counted a second time either."""
    group = unique("outage")
    labels = {"operation": "chat", "model_group": group, "deployment": "dep-1", "status": "200"}
    for index in range(3):
        log_buffer.usage_record_enqueue(record(request_id=f"req_{group}_{index}", model_group=group,
                                               deployment_id="dep-1"))
    table = connection.ops.quote_name(RequestLog._meta.db_table)
    hidden = connection.ops.quote_name("requestlog_hidden")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {hidden}")
    try:
        assert log_buffer.metrics_observe_pending() == 3
        with pytest.raises(Exception, match=r"(?i)requestlog"):
            log_buffer.usage_flush()
        assert log_buffer.pending_count() == 3  # kept for the database
        assert log_buffer.metrics_observe_pending() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {hidden} RENAME TO {table}")

    assert log_buffer.usage_flush() == 3
    assert log_buffer.metrics_observe_pending() == 0
    assert value("gatehouse_requests_total", **labels) == 3
    assert value("gatehouse_log_buffer_rows") == 0  # the gauge as the last tick saw it: nothing waiting


@pytest.mark.django_db(transaction=True)
def test_the_flusher_keeps_counting_while_the_database_is_down(caplog):
    """Each tick observes first: records finished during an outage are counted within a tick, though their
    rows wait (with a growing pause) for the database, and they are not counted again once written."""
    group = unique("during-outage")
    labels = {"operation": "chat", "model_group": group, "deployment": "dep-1", "status": "200"}
    table = connection.ops.quote_name(RequestLog._meta.db_table)
    hidden = connection.ops.quote_name("requestlog_gone")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {hidden}")
    log_buffer.flusher_start(interval=0.05)
    try:
        log_buffer.usage_record_enqueue(record(model_group=group, deployment_id="dep-1"))
        assert wait_until(lambda: "request log flush failed; 1 rows kept" in caplog.text, seconds=10, interval=0.05)
        log_buffer.usage_record_enqueue(record(model_group=group, deployment_id="dep-1"))  # inside the retry pause
        # Sooner than the write's retry pause (1 s): the metrics did not wait for it.
        assert wait_until(lambda: value("gatehouse_requests_total", **labels) == 2, seconds=0.9, interval=0.02)
        assert wait_until(lambda: value("gatehouse_log_buffer_rows") == 2, seconds=0.5, interval=0.02)
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {hidden} RENAME TO {table}")
        assert wait_until(lambda: log_buffer.pending_count() == 0, seconds=10, interval=0.05)
    finally:
        log_buffer.flusher_stop()
    assert RequestLog.objects.filter(model_group=group).count() == 2
    assert value("gatehouse_requests_total", **labels) == 2
    assert value("gatehouse_log_buffer_rows") == 0


def test_the_log_buffer_gauge_shows_the_rows_waiting():
    for _ in range(4):
        log_buffer.usage_record_enqueue(record(model_group=unique("waiting")))
    log_buffer.metrics_observe_pending()
    assert value("gatehouse_log_buffer_rows") == 4
    log_buffer.pending_discard()
    log_buffer.metrics_observe_pending()
    assert value("gatehouse_log_buffer_rows") == 0


# -- in-flight calls --

def test_a_stream_is_in_flight_until_it_ends_even_when_the_client_hangs_up(client, metered, auth_headers):
    metered.stream_chunks = 50
    response = post_json(client, "/v1/chat/completions", {"model": "metered", "messages": USER, "stream": True},
                         auth_headers)
    content = iter(response.streaming_content)
    next(content)
    assert in_flight_count() == 1
    assert page_samples(client.get("/metrics", **auth_headers))[("gatehouse_in_flight_requests", ())] == 1

    response.close()  # the client hung up: the server closes the response

    assert in_flight_count() == 0
    samples = page_samples(client.get("/metrics", **auth_headers))
    assert samples[("gatehouse_in_flight_requests", ())] == 0
    assert samples[("gatehouse_requests_total", (("deployment", "metered-1"), ("model_group", "metered"),
                                                 ("operation", "chat"), ("status", "499")))] >= 1


def test_answered_refused_and_fanned_out_calls_all_leave_the_in_flight_count(client, metered, auth_headers):
    assert post_json(client, "/v1/chat/completions", {"model": "metered", "messages": USER},
                     auth_headers).status_code == 200
    assert post_json(client, "/v1/chat/completions", {"model": "metered,pair", "messages": USER},
                     auth_headers).status_code == 200
    assert post_json(client, "/v1/chat/completions", {"model": "no-such-group", "messages": USER},
                     auth_headers).status_code == 404
    assert post_json(client, "/v1/chat/completions", {"model": "metered", "messages": USER},
                     bearer("sk-wrong")).status_code == 401
    metered.fail_next(status=400, body={"error": {"message": "no", "type": "invalid_request_error"}})
    assert post_json(client, "/v1/chat/completions", {"model": "metered", "messages": USER},
                     auth_headers).status_code == 400
    assert in_flight_count() == 0
    assert len(log_buffer.pending_records()) == 6


# -- GET /metrics --

def test_the_page_counts_what_this_process_just_answered(client, metered, auth_headers):
    labels = (("deployment", "metered-1"), ("model_group", "metered"), ("operation", "chat"), ("status", "200"))
    before = page_samples(client.get("/metrics", **auth_headers)).get(("gatehouse_requests_total", labels), 0)
    tokens = (("model_group", "metered"), ("type", "prompt"))
    tokens_before = page_samples(client.get("/metrics", **auth_headers)).get(("gatehouse_tokens_total", tokens), 0)

    for _ in range(2):
        assert post_json(client, "/v1/chat/completions", {"model": "metered", "messages": USER},
                         auth_headers).status_code == 200
    samples = page_samples(client.get("/metrics", **auth_headers))

    assert samples[("gatehouse_requests_total", labels)] == before + 2
    assert samples[("gatehouse_tokens_total", tokens)] == tokens_before + 22
    assert log_buffer.pending_count() == 2  # counted, and still waiting for the database


def test_the_page_needs_an_admin_key(client, metered):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert error_body(response) == envelope(
        "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
        "authentication_error", None, "invalid_api_key")

    assert client.get("/metrics", **bearer("sk-not-a-key")).status_code == 401

    plain = generate(client)["key"]
    response = client.get("/metrics", **bearer(plain))
    assert response.status_code == 403
    assert error_body(response) == envelope("Only the master key or a proxy_admin key may call GET /metrics.",
                                            "permission_denied", None, "admin_only")

    admin = generate(client, role="proxy_admin")["key"]
    assert ("gatehouse_in_flight_requests", ()) in page_samples(client.get("/metrics", **bearer(admin)))
    assert ("gatehouse_in_flight_requests", ()) in page_samples(client.get("/metrics", **MASTER))


def test_a_scrapers_accept_header_gets_the_text_format_and_errors_stay_json(client, metered):
    page = client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_ACCEPT, **MASTER)
    assert ("gatehouse_in_flight_requests", ()) in page_samples(page)

    refused = client.get("/metrics", HTTP_ACCEPT="text/plain")
    assert refused.status_code == 401
    assert error_body(refused)["error"]["type"] == "authentication_error"


def test_the_trailing_slash_serves_the_same_page(client, metered):
    assert ("gatehouse_in_flight_requests", ()) in page_samples(client.get("/metrics/", **MASTER))
    assert client.get("/metrics/").status_code == 401


def test_public_metrics_need_no_key(client, metered, settings):
    settings.GATEWAY_METRICS_PUBLIC = True
    assert ("gatehouse_in_flight_requests", ()) in page_samples(client.get("/metrics"))
    assert ("gatehouse_in_flight_requests", ()) in page_samples(client.get("/metrics", **bearer("sk-whatever")))


def test_writes_are_refused_with_the_envelope(client, metered):
    response = client.post("/metrics", **MASTER)
    assert response.status_code == 405
    assert orjson.loads(response.content)["error"]["type"] == "invalid_request_error"


def test_cooldowns_are_read_at_scrape_time(client, metered):
    cooldown_start("pair-b", seconds=30, reason="the test cools it down")
    samples = page_samples(client.get("/metrics", **MASTER))

    cooling = {labels: sample for (name, labels), sample in samples.items()
               if name == "gatehouse_deployment_cooldown_seconds"}
    assert set(cooling) == {(("deployment", deployment), ("model_group", group)) for group, deployment in
                            (("metered", "metered-1"), ("pair", "pair-a"), ("pair", "pair-b"))}
    assert 29 < cooling[(("deployment", "pair-b"), ("model_group", "pair"))] <= 30
    assert cooling[(("deployment", "pair-a"), ("model_group", "pair"))] == 0
    assert cooling[(("deployment", "metered-1"), ("model_group", "metered"))] == 0


# -- batch lines --

def test_batch_lines_are_counted_only_once_their_transaction_commits(django_capture_on_commit_callbacks):
    group = unique("batch-group")
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            batch_lines_count(model_group=group, completed=3, failed=1)
        with pytest.raises(RuntimeError), transaction.atomic():
            batch_lines_count(model_group=group, completed=50, failed=50)
            raise RuntimeError("the write failed: its lines run again")
        assert value("gatehouse_batch_lines_total", model_group=group, outcome="completed") == 0  # not yet

    assert value("gatehouse_batch_lines_total", model_group=group, outcome="completed") == 3
    assert value("gatehouse_batch_lines_total", model_group=group, outcome="failed") == 1


@pytest.mark.parametrize(("given", "address"), [
    ("9101", ("127.0.0.1", 9101)),
    ("0.0.0.0:9101", ("0.0.0.0", 9101)),  # what an operator passes to listen everywhere
    ("[::1]:9101", ("::1", 9101)),
])
def test_the_metrics_port_option_takes_a_port_or_an_address(given, address):
    assert metrics_address(given) == address


@pytest.mark.parametrize(("given", "problem"), [
    ("nine", "invalid literal for int() with base 10: 'nine'"),
    ("70000", "port 70000 is out of range"),
])
def test_a_bad_metrics_port_stops_the_worker_before_it_starts(given, problem):
    with pytest.raises(CommandError) as refused:
        call_command("batch_worker", "--metrics-port", given)
    assert str(refused.value) == f"--metrics-port must be PORT or HOST:PORT: {problem}"
