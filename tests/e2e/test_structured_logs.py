"""A real gateway writing JSON lines: every proxied request (a chat, a stream, an embedding, a refused call,
an upstream failure) is exactly one `gatehouse.access` line with the request log's fields; a key with
`log_prompts` adds its prompt and answer; nothing else ever writes a prompt, an answer, a key's secret or
a provider's credentials anywhere in the process's output. A batch worker started with a log retention
prunes the old rows and says so in a JSON line of its own."""
from __future__ import annotations

import secrets
from collections.abc import Iterator

import openai
import orjson
import pytest
from openai import OpenAI

from tests.e2e.helpers import post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import GatewayProcess, gateway_database_execute, start_batch_worker, start_gateway

pytestmark = pytest.mark.e2e

MASTER = "sk-structured-logs-master-" + secrets.token_hex(8)
UPSTREAM_KEY = "sk-upstream-structured-" + secrets.token_hex(8)
CHAT_ID, EMBED_ID = "logs-chat-1", "logs-embed-1"
FIELDS = {"request_id", "key_id", "key_alias", "team_id", "user_id", "operation", "model_group", "deployment_id",
          "provider", "status", "status_code", "error_type", "latency_ms", "time_to_first_token_ms", "prompt_tokens",
          "completion_tokens", "total_tokens", "cost", "attempts", "fallbacks", "streamed", "metadata"}
BASE = {"time", "level", "logger", "message"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    def entry(group: str, model: str, deployment_id: str) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id},
                "litellm_params": {"model": model, "api_base": f"{upstream.url}/v1", "api_key": UPSTREAM_KEY}}

    config = {"model_list": [entry("chat", "openai/gpt-4o-mini", CHAT_ID),
                             entry("embed", "openai/text-embedding-3-small", EMBED_ID)],
              "router_settings": {"num_retries": 0},
              # Read from the environment, so that not even the startup banner shows it.
              "general_settings": {"master_key": "os.environ/STRUCTURED_LOGS_MASTER_KEY"}}
    process = start_gateway(tmp_path_factory.mktemp("structured-logs"), config,
                            env={"GATEWAY_LOG_FORMAT": "json", "STRUCTURED_LOGS_MASTER_KEY": MASTER})
    yield process
    process.stop()


def json_lines(gateway: GatewayProcess) -> list[dict]:
    """Every log line of the gateway's output: all but the `serve` banner, printed before logging starts."""
    lines = gateway.logs().splitlines()
    banner = next(index for index, line in enumerate(lines) if line.startswith("  Batch worker:")) + 1
    assert lines[0].startswith("Gatehouse ")
    return [orjson.loads(line) for line in lines[banner:]]


def access_line(gateway: GatewayProcess, request_id: str) -> dict:
    """The one access line of `request_id`, once written (a stream's is written as its last chunk goes)."""
    def found() -> list[dict]:
        return [line for line in json_lines(gateway)
                if line["logger"] == "gatehouse.access" and line.get("request_id") == request_id]

    assert wait_until(lambda: len(found()) > 0, seconds=10), gateway.logs()[-3000:]
    [line] = found()
    return line


def issue(gateway: GatewayProcess, **fields) -> dict:
    response = post_json(f"{gateway.url}/key/generate", fields, headers={"Authorization": f"Bearer {MASTER}"})
    assert response.status_code == 200, response.text
    return response.json()


def checked(line: dict, **varying) -> dict:
    """The line's fields, after checking its shape and the values that vary (time, latency)."""
    assert set(line) - {"prompt", "system", "response"} == BASE | FIELDS
    assert line["level"] == "INFO"
    assert line["time"].endswith("Z") and len(line["time"]) == len("2025-01-31T12:00:00.000Z")
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
    return {name: value for name, value in line.items() if name not in {"time", "latency_ms", *varying}}


def test_each_request_is_one_json_line_and_only_logged_prompts_appear(gateway, upstream):
    quiet = issue(gateway, key_alias="quiet", user_id="user-q", metadata={"team": "q"})
    audited = issue(gateway, key_alias="audited", log_prompts=True)
    hidden_prompt = "hidden prompt " + secrets.token_hex(8)
    hidden_answer = "hidden answer " + secrets.token_hex(8)
    logged_prompt = "logged prompt " + secrets.token_hex(8)
    logged_answer = "logged answer " + secrets.token_hex(8)
    quiet_messages = [{"role": "user", "content": hidden_prompt}]
    audited_messages = [{"role": "user", "content": logged_prompt}]

    with OpenAI(base_url=gateway.v1, api_key=quiet["key"], max_retries=0) as sdk:
        upstream.reply = hidden_answer
        chat = sdk.chat.completions.with_raw_response.create(model="chat", messages=quiet_messages,
                                                             metadata={"run": "1"})
        assert chat.parse().choices[0].message.content == hidden_answer
        with sdk.chat.completions.with_streaming_response.create(model="chat", messages=quiet_messages,
                                                                  stream=True) as stream:
            assert "".join(chunk.choices[0].delta.content or "" for chunk in stream.parse() if chunk.choices) == \
                "tok0 tok1 tok2 tok3 tok4 "
            stream_id = stream.headers["x-request-id"]
        embedding = sdk.embeddings.with_raw_response.create(model="embed", input=[hidden_prompt])
        upstream.fail_next(status=400, body={"error": {"message": "This model cannot do that.",
                                                       "type": "invalid_request_error", "param": None,
                                                       "code": "unsupported"}})
        with pytest.raises(openai.BadRequestError) as failed:
            sdk.chat.completions.create(model="chat", messages=quiet_messages)
    with OpenAI(base_url=gateway.v1, api_key="sk-wrong-" + secrets.token_hex(12), max_retries=0) as stranger, \
            pytest.raises(openai.AuthenticationError) as refused:
        stranger.chat.completions.create(model="chat", messages=quiet_messages)
    with OpenAI(base_url=gateway.v1, api_key=audited["key"], max_retries=0) as sdk:
        upstream.reply = logged_answer
        logged = sdk.chat.completions.with_raw_response.create(model="chat", messages=audited_messages)
        with sdk.chat.completions.with_streaming_response.create(model="chat", messages=audited_messages,
                                                                  stream=True) as stream:
            assert len(list(stream.parse())) == 7
            logged_stream_id = stream.headers["x-request-id"]

    chat_cost = float(chat.headers["x-gatehouse-response-cost"])
    assert chat_cost > 0
    quiet_ids = {"key_id": quiet["token"], "key_alias": "quiet", "team_id": "", "user_id": "user-q"}
    answered = {"model_group": "chat", "deployment_id": CHAT_ID, "provider": "openai", "status": "ok",
                "status_code": 200, "error_type": "", "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                "cost": chat_cost, "attempts": 1, "fallbacks": 0, "time_to_first_token_ms": None,
                "streamed": False, "metadata": {}, "operation": "chat"}
    chat_line = access_line(gateway, chat.headers["x-request-id"])
    assert checked(chat_line, message=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": chat.headers["x-request-id"],
        **quiet_ids, **answered, "metadata": {"run": "1"}}
    assert chat_line["message"].startswith(f"request {chat.headers['x-request-id']} chat chat -> {CHAT_ID} ok 200 ")

    stream_line = access_line(gateway, stream_id)
    assert checked(stream_line, message=True, time_to_first_token_ms=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": stream_id, **quiet_ids,
        **{name: value for name, value in answered.items() if name != "time_to_first_token_ms"}, "streamed": True}
    assert 0 < stream_line["time_to_first_token_ms"] <= stream_line["latency_ms"]

    embedding_line = access_line(gateway, embedding.headers["x-request-id"])
    assert checked(embedding_line, message=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": embedding.headers["x-request-id"], **quiet_ids,
        **answered, "operation": "embeddings", "model_group": "embed", "deployment_id": EMBED_ID,
        "prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1,
        "cost": float(embedding.headers["x-gatehouse-response-cost"])}

    failed_id = failed.value.response.headers["x-request-id"]
    assert checked(access_line(gateway, failed_id), message=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": failed_id, **quiet_ids, **answered,
        "status": "error", "status_code": 400, "error_type": "invalid_request_error", "prompt_tokens": 0,
        "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}

    refused_id = refused.value.response.headers["x-request-id"]
    refused_line = access_line(gateway, refused_id)
    assert refused_line["message"].startswith(f"request {refused_id} chat - -> - error 401 in ")
    assert refused_line["message"].endswith(" tokens=0/0 cost=0.0 key=- metadata=-")
    assert checked(refused_line, message=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": refused_id, "key_id": "", "key_alias": "",
        "team_id": "", "user_id": "", "operation": "chat", "model_group": "", "deployment_id": "", "provider": "",
        "status": "error", "status_code": 401, "error_type": "authentication_error", "prompt_tokens": 0,
        "completion_tokens": 0, "total_tokens": 0, "cost": 0.0, "attempts": 0, "fallbacks": 0,
        "time_to_first_token_ms": None, "streamed": False, "metadata": {}}

    audited_ids = {"key_id": audited["token"], "key_alias": "audited", "team_id": "", "user_id": ""}
    assert checked(access_line(gateway, logged.headers["x-request-id"]), message=True) == {
        "level": "INFO", "logger": "gatehouse.access", "request_id": logged.headers["x-request-id"], **audited_ids,
        **answered, "cost": float(logged.headers["x-gatehouse-response-cost"]),
        "prompt": audited_messages, "response": logged_answer}
    logged_stream_line = access_line(gateway, logged_stream_id)
    assert (logged_stream_line["prompt"], "response" in logged_stream_line) == (audited_messages, False)

    output = gateway.logs()
    access_lines = [line for line in json_lines(gateway) if line["logger"] == "gatehouse.access"]
    assert len(access_lines) == 7  # one per proxied request, no more
    for secret in (hidden_prompt, hidden_answer, MASTER, quiet["key"], audited["key"], UPSTREAM_KEY,
                   refused.value.request.headers["authorization"].split()[-1]):
        assert secret not in output, secret
    assert output.count(logged_prompt) == 2 and output.count(logged_answer) == 1
    every_line = json_lines(gateway)  # each line is a JSON object, gunicorn's own included
    assert {"Starting gunicorn 27.0.1", "Using worker: gevent"} <= {line["message"] for line in every_line
                                                                    if line["logger"] == "gunicorn.error"}
    assert all(set(line) >= BASE and line["message"] for line in every_line)


def test_a_batch_worker_prunes_old_request_logs_and_logs_what_it_removed(gateway, upstream):
    """The worker's sweep applies GATEWAY_LOG_RETENTION_DAYS at start: old rows go, the daily totals stay."""
    with OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0) as sdk:
        for _ in range(3):
            sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "to be pruned"}])
    answered_by_master = "SELECT COUNT(*) FROM keys_requestlog WHERE key_id = '' AND status = 'ok'"
    assert wait_until(lambda: gateway_database_execute(gateway, answered_by_master) == [(3,)], seconds=10)
    # Every row so far (this module's requests, written in order by the one web worker) is made old.
    gateway_database_execute(gateway, "UPDATE keys_requestlog SET created_at = '2001-02-03 04:05:06+00:00'")
    [(old_rows,)] = gateway_database_execute(gateway, "SELECT COUNT(*) FROM keys_requestlog")
    daily_totals = "SELECT SUM(requests), SUM(prompt_tokens), SUM(cost) FROM keys_dailyspend"
    daily = gateway_database_execute(gateway, daily_totals)
    assert daily[0][0] == old_rows >= 3

    worker = start_batch_worker(gateway, env={"GATEWAY_LOG_RETENTION_DAYS": "30"})
    try:
        def retention_lines() -> list[dict]:
            return [orjson.loads(line) for line in worker.logs().splitlines()
                    if line.startswith("{") and '"gatehouse.retention"' in line]

        assert wait_until(lambda: retention_lines(), seconds=30), worker.logs()[-3000:]
    finally:
        assert worker.stop() == 0, worker.logs()[-3000:]

    [line] = retention_lines()
    assert (line["level"], line["request_logs_deleted"], line["minute_rollups_deleted"], line["backlog"]) == \
        ("INFO", old_rows, 0, False)
    assert line["message"] == (f"retention: deleted {old_rows} request logs older than 30 days and 0 minute "
                               "rollups older than 48 hours")
    assert gateway_database_execute(gateway, "SELECT COUNT(*) FROM keys_requestlog") == [(0,)]
    assert gateway_database_execute(gateway, daily_totals) == daily
