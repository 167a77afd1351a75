"""The access line of each proxied request (logger `gatehouse.access`), in-process: exactly one per request
with the request log's fields; the prompt and answer only for a key with `log_prompts`, never otherwise;
and the JSON line of it holds no secret."""
from __future__ import annotations

import logging

import orjson
import pytest

from gateway_project.log_format import JsonFormatter
from tests.keys import support
from tests.keys.support import MASTER, bearer, generate
from tests.proxy_api.helpers import UPSTREAM_KEY, post_json
from tests.support.server import MASTER_KEY

fresh_key_state = support.fresh_key_state

pytestmark = pytest.mark.usefixtures("fresh_key_state")

FIELDS = ("request_id", "key_id", "key_alias", "team_id", "user_id", "operation", "model_group", "deployment_id",
          "provider", "status", "status_code", "error_type", "latency_ms", "time_to_first_token_ms", "prompt_tokens",
          "completion_tokens", "total_tokens", "cost", "attempts", "fallbacks", "streamed", "metadata")
PROMPT_FIELDS = ("prompt", "system", "response")


@pytest.fixture
def access_lines(caplog):
    caplog.set_level(logging.INFO, logger="gatehouse.access")

    def lines() -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.name == "gatehouse.access"]

    return lines


def fields_of(record: logging.LogRecord) -> dict:
    """The line's fields as the JSON formatter writes them (time and latency, which vary, checked apart)."""
    parsed = orjson.loads(JsonFormatter().format(record))
    assert isinstance(parsed.pop("latency_ms"), float)
    for name in ("time", "level", "logger", "message"):
        parsed.pop(name)
    return parsed


def expected(response, **fields) -> dict:
    line = {"request_id": response["x-request-id"], "key_id": "", "key_alias": "", "team_id": "", "user_id": "",
            "operation": "chat", "model_group": "gpt-fake", "deployment_id": response.get("x-gatehouse-deployment-id",
                                                                                           ""),
            "provider": "openai", "status": "ok", "status_code": 200, "error_type": "", "time_to_first_token_ms": None,
            "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cost": 0.0, "attempts": 1,
            "fallbacks": 0, "streamed": False, "metadata": {}}
    line.update(fields)
    return line


def test_one_line_per_request_with_every_field_and_no_prompt(client, fake_gateway, access_lines):
    key = generate(client, key_alias="quiet-app", user_id="user-7")
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "the quiet prompt 5c1e"}],
            "metadata": {"trace": "t-1"}}

    response = post_json(client, "/v1/chat/completions", body, bearer(key["key"]))

    assert response.status_code == 200
    [line] = access_lines()
    assert fields_of(line) == expected(response, key_id=key["token"], key_alias="quiet-app", user_id="user-7",
                                       cost=float(response["x-gatehouse-response-cost"]), metadata={"trace": "t-1"})
    assert line.getMessage().startswith(f"request {response['x-request-id']} chat gpt-fake -> ")
    text = JsonFormatter().format(line)
    for secret in ("the quiet prompt 5c1e", fake_gateway.reply, key["key"], MASTER_KEY, UPSTREAM_KEY):
        assert secret not in text


def test_a_refused_request_is_one_line_too(client, fake_gateway, access_lines):
    response = post_json(client, "/v1/chat/completions", {"model": "gpt-fake", "messages": []},
                         bearer("sk-not-a-key-0123456789abcdef"))

    assert response.status_code == 401
    [line] = access_lines()
    assert fields_of(line) == expected(response, model_group="", deployment_id="", provider="", status="error",
                                       status_code=401, error_type="authentication_error", prompt_tokens=0,
                                       completion_tokens=0, total_tokens=0, attempts=0)
    assert "sk-not-a-key-0123456789abcdef" not in JsonFormatter().format(line)
    assert fake_gateway.requests == []


def test_a_key_that_logs_prompts_logs_what_it_sent_and_got(client, fake_gateway, access_lines):
    key = generate(client, key_alias="audited", log_prompts=True)
    assert key["log_prompts"] is True
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    fake_gateway.reply = "Four."

    chat = post_json(client, "/v1/chat/completions", {"model": "gpt-fake", "messages": messages},
                     bearer(key["key"]))
    completion = post_json(client, "/v1/completions", {"model": "instruct-fake", "prompt": "Say hi"},
                           bearer(key["key"]))
    embedding = post_json(client, "/v1/embeddings", {"model": "embed-fake", "input": ["one", "two"]},
                          bearer(key["key"]))
    moderation = post_json(client, "/v1/moderations", {"model": "moderation-fake", "input": "a calm sentence"},
                           bearer(key["key"]))

    assert [response.status_code for response in (chat, completion, embedding, moderation)] == [200] * 4
    lines = [fields_of(line) for line in access_lines()]
    assert [(line["operation"], {name: line[name] for name in PROMPT_FIELDS if name in line}) for line in lines] == [
        ("chat", {"prompt": messages, "response": "Four."}),
        ("completions", {"prompt": "Say hi", "response": " Four."}),
        ("embeddings", {"prompt": ["one", "two"]}),
        ("moderations", {"prompt": "a calm sentence"}),
    ]
    assert lines[0] == {**expected(chat, key_id=key["token"], key_alias="audited",
                                   cost=float(chat["x-gatehouse-response-cost"])),
                        "prompt": messages, "response": "Four."}


def test_a_stream_of_such_a_key_logs_its_prompt_but_not_its_text(client, fake_gateway, access_lines):
    key = generate(client, log_prompts=True)
    messages = [{"role": "user", "content": "stream me"}]

    response = post_json(client, "/v1/chat/completions", {"model": "gpt-fake", "messages": messages, "stream": True},
                         bearer(key["key"]))
    streamed = b"".join(response.streaming_content)
    response.close()

    assert b"tok0" in streamed
    [line] = access_lines()
    fields = fields_of(line)
    assert (fields["streamed"], fields["prompt"], "response" in fields) == (True, messages, False)
    assert isinstance(fields["time_to_first_token_ms"], float)


def test_turning_it_off_again_stops_logging_and_the_master_key_never_logs(client, fake_gateway, access_lines):
    key = generate(client, log_prompts=True)
    updated = post_json(client, "/key/update", {"key": key["token"], "log_prompts": False}, MASTER)
    assert updated.status_code == 200
    assert orjson.loads(updated.content)["log_prompts"] is False

    by_key = post_json(client, "/v1/chat/completions",
                       {"model": "gpt-fake", "messages": [{"role": "user", "content": "no longer logged"}]},
                       bearer(key["key"]))
    by_master = post_json(client, "/v1/chat/completions",
                          {"model": "gpt-fake", "messages": [{"role": "user", "content": "the master's prompt"}]},
                          MASTER)

    assert (by_key.status_code, by_master.status_code) == (200, 200)
    lines = access_lines()
    assert len(lines) == 2
    for line in lines:
        assert not set(PROMPT_FIELDS) & set(fields_of(line))
        text = JsonFormatter().format(line)
        assert "no longer logged" not in text and "the master's prompt" not in text


def test_anthropic_messages_log_their_messages_system_and_content(client, fake_gateway, access_lines):
    key = generate(client, log_prompts=True)
    fake_gateway.reply = "Bonjour."
    messages = [{"role": "user", "content": "Say hello in French."}]

    response = post_json(client, "/v1/messages", {"model": "gpt-fake", "max_tokens": 50, "system": "You translate.",
                                                  "messages": messages}, {"HTTP_X_API_KEY": key["key"]})

    assert response.status_code == 200, response.content
    [line] = access_lines()
    fields = fields_of(line)
    assert (fields["operation"], fields["prompt"], fields["system"], fields["response"]) == \
        ("messages", messages, "You translate.", [{"type": "text", "text": "Bonjour."}])


def test_with_plain_lines_the_prompt_goes_into_the_message(client, fake_gateway, access_lines, settings):
    settings.GATEWAY_LOG_FORMAT = "plain"
    key = generate(client, log_prompts=True)
    fake_gateway.reply = "Hi!"

    response = post_json(client, "/v1/chat/completions",
                         {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello"}]}, bearer(key["key"]))

    assert response.status_code == 200
    [line] = access_lines()
    assert line.getMessage().endswith(' metadata=- prompt=[{"role":"user","content":"hello"}] response="Hi!"')
