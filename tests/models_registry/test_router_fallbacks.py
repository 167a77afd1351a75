"""Each fallback kind, the per-error-class retry policy, `disable_fallbacks`, and the timeouts that bound
attempts: the router against real adapters and the loopback fake (deployments told apart by path prefix)."""
from __future__ import annotations

import time

import pytest

from models_registry.router import route
from providers.errors import (
    ContentPolicyViolationError,
    ContextWindowExceededError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from tests.models_registry.support import CHAT_BODY, chat_call, openai_entry, send_chat

CONTEXT_TOO_LONG = {"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages "
                                         "resulted in 9000 tokens.", "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}
CONTENT_REFUSED = {"error": {"message": "Your request was rejected as a result of our safety system.",
                             "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}
AZURE_FILTERED = {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                      "management policy.", "type": None, "param": "prompt", "code": "content_filter",
                            "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                          "content_filter_result": {"hate": {"filtered": True}}}}}
VLLM_TOO_LONG = {"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you "
                 "requested 5000 tokens in the messages.", "type": "BadRequestError", "param": None, "code": 400}


def _prefixes(fake) -> list[str]:
    return [request.path.split("/")[1] for request in fake.requests]


def _groups(fake, router: dict, **extra_groups) -> dict:
    """`primary` has two deployments (a, b); every other group one, named after its prefix."""
    entries = [openai_entry("primary", fake.url, "a"), openai_entry("primary", fake.url, "b")]
    entries += [openai_entry(group, fake.url, prefix) for group, prefix in extra_groups.items()]
    return {"model_list": entries, "router_settings": {"num_retries": 2, **router}}


ALL_KINDS = {"fallbacks": [{"primary": ["general"]}], "context_window_fallbacks": [{"primary": ["large"]}],
             "content_policy_fallbacks": [{"primary": ["lenient"]}], "default_fallbacks": ["catch-all"]}
EXTRA = {"general": "gen", "large": "lg", "lenient": "len", "catch-all": "any"}


# -- each fallback kind -----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "group", "prefix", "error_class"), [
    (CONTEXT_TOO_LONG, "large", "lg", ContextWindowExceededError),
    (CONTENT_REFUSED, "lenient", "len", ContentPolicyViolationError),
    (AZURE_FILTERED, "lenient", "len", ContentPolicyViolationError),
], ids=["context-window", "content-policy", "azure-content-filter"])
def test_a_refusal_goes_straight_to_its_own_fallback_kind(configure_gateway, fake_openai, body, group, prefix,
                                                         error_class):
    configure_gateway(_groups(fake_openai, ALL_KINDS, **EXTRA))
    fake_openai.fail_next(status=400, body=body)

    response, outcome = send_chat("primary")

    # Not retried on the other deployment of `primary`: it would refuse the same request the same way.
    assert (outcome.model_group, outcome.deployment.id, outcome.attempts, outcome.retries, outcome.fallbacks_used) \
        == (group, prefix, 2, 0, 1)
    assert response.parsed["model"] == f"{prefix}-model"
    assert _prefixes(fake_openai)[1:] == [prefix]
    assert _prefixes(fake_openai)[0] in ("a", "b")


@pytest.mark.parametrize(("body", "error_class", "code", "param"), [
    (CONTEXT_TOO_LONG, ContextWindowExceededError, "context_length_exceeded", "messages"),
    (VLLM_TOO_LONG, ContextWindowExceededError, "context_length_exceeded", None),
    (CONTENT_REFUSED, ContentPolicyViolationError, "content_policy_violation", None),
    (AZURE_FILTERED, ContentPolicyViolationError, "content_filter", "prompt"),
], ids=["openai-context", "vllm-context-wording", "openai-content", "azure-content-filter"])
def test_without_a_fallback_of_its_kind_the_refusal_reaches_the_caller_as_a_400(configure_gateway, fake_openai, body,
                                                                                error_class, code, param):
    # Generic and default fallbacks exist, but a different group would not make the prompt shorter.
    configure_gateway(_groups(fake_openai, {"fallbacks": [{"primary": ["general"]}],
                                            "default_fallbacks": ["catch-all"]}, **EXTRA))
    fake_openai.fail_next(status=400, body=body)

    with pytest.raises(error_class) as raised:
        send_chat("primary")

    message = body["error"]["message"] if "error" in body else body["message"]
    assert raised.value.status_code == 400
    assert raised.value.envelope() == {"error": {"message": message, "type": "invalid_request_error",
                                                 "param": param, "code": code}}
    assert len(fake_openai.requests) == 1


def test_general_fallbacks_serve_outages_not_refusals(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {**ALL_KINDS, "num_retries": 1}, **EXTRA))
    fake_openai.fail_next(2, status=503, path_contains="/chat/completions")

    _, outcome = send_chat("primary")

    assert (outcome.model_group, outcome.deployment.id, outcome.attempts, outcome.retries, outcome.fallbacks_used) \
        == ("general", "gen", 3, 1, 1)
    assert sorted(_prefixes(fake_openai)[:2]) == ["a", "b"]


def test_default_fallbacks_serve_groups_without_fallbacks_of_their_own(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {"num_retries": 0, "default_fallbacks": ["catch-all"],
                                            "fallbacks": [{"own": ["general"]}]},
                              own="own", general="gen", **{"catch-all": "any"}))
    fake_openai.fail_next(status=500, path_contains="/own/")
    fake_openai.fail_next(status=500, path_contains="/a/")
    fake_openai.fail_next(status=500, path_contains="/b/")

    _, own = send_chat("own")
    _, primary = send_chat("primary")

    assert (own.model_group, primary.model_group) == ("general", "catch-all")
    assert _prefixes(fake_openai)[:2] == ["own", "gen"]


def test_default_fallbacks_never_fall_back_to_the_group_itself(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {"num_retries": 0, "default_fallbacks": ["primary", "catch-all"]},
                              **{"catch-all": "any"}))
    fake_openai.fail_next(status=500, path_contains="/any/")

    _, outcome = send_chat("catch-all")

    assert (outcome.model_group, outcome.fallbacks_used) == ("primary", 1)  # catch-all itself was skipped
    assert _prefixes(fake_openai)[0] == "any"
    assert _prefixes(fake_openai)[1] in ("a", "b")


def test_disable_fallbacks_keeps_the_request_on_its_group(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {**ALL_KINDS, "num_retries": 1}, **EXTRA))
    fake_openai.fail_next(2, status=500, path_contains="/chat/completions")

    with pytest.raises(UpstreamServerError):
        route(model_group="primary", operation="chat", call=chat_call, disable_fallbacks=True)

    assert sorted(_prefixes(fake_openai)) == ["a", "b"]
    fake_openai.reset()
    fake_openai.fail_next(status=400, body=CONTEXT_TOO_LONG)
    with pytest.raises(ContextWindowExceededError):
        route(model_group="primary", operation="chat", call=chat_call, disable_fallbacks=True,
              fallbacks=["general"])
    assert len(fake_openai.requests) == 1


def test_per_request_fallbacks_replace_the_configured_and_default_ones(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {**ALL_KINDS, "num_retries": 0}, **EXTRA, other="oth"))
    fake_openai.fail_next(status=500, path_contains="/chat/completions")

    _, outcome = send_chat("primary", fallbacks=["other"])

    assert (outcome.model_group, outcome.fallbacks_used) == ("other", 1)


# -- the retry policy -------------------------------------------------------------------------------

def _solo(fake, **router) -> dict:
    return {"model_list": [openai_entry("g", fake.url, "a")], "router_settings": router}


@pytest.mark.parametrize(("fault", "policy", "error_class", "attempts"), [
    ({"status": 429}, {"RateLimitErrorRetries": 0}, UpstreamRateLimitError, 1),
    ({"status": 429}, {"RateLimitErrorRetries": 4}, UpstreamRateLimitError, 5),
    ({"status": 500}, {"InternalServerErrorRetries": 1, "RateLimitErrorRetries": 5}, UpstreamServerError, 2),
    ({"kind": "reset"}, {"InternalServerErrorRetries": 3}, UpstreamConnectionError, 4),
    ({"kind": "hang", "seconds": 1.0}, {"TimeoutErrorRetries": 1}, UpstreamTimeoutError, 2),
], ids=["rate-limit-none", "rate-limit-more", "server-error", "connection-reset", "timeout"])
def test_the_retry_policy_sets_the_retries_per_kind_of_failure(configure_gateway, fake_openai, fault, policy,
                                                               error_class, attempts):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", timeout=0.2)],
                       "router_settings": {"num_retries": 2, "retry_policy": policy}})
    fake_openai.fail_next(10, path_contains="/a/", **{"headers": {"Retry-After": "0"}, **fault})

    with pytest.raises(error_class):
        send_chat("g")

    assert len(fake_openai.requests) == attempts


def test_a_kind_the_policy_does_not_name_keeps_num_retries(configure_gateway, fake_openai):
    configure_gateway(_solo(fake_openai, num_retries=2, retry_policy={"RateLimitErrorRetries": 0}))
    fake_openai.fail_next(10, status=500, headers={"Retry-After": "0"})

    with pytest.raises(UpstreamServerError):
        send_chat("g")

    assert len(fake_openai.requests) == 3


def test_the_requests_own_num_retries_beats_the_policy(configure_gateway, fake_openai):
    configure_gateway(_solo(fake_openai, num_retries=0, retry_policy={"InternalServerErrorRetries": 0}))
    fake_openai.fail_next(2, status=500, headers={"Retry-After": "0"})

    _, outcome = send_chat("g", num_retries=2)

    assert (outcome.attempts, outcome.retries) == (3, 2)


def test_authentication_retries_zero_stops_even_the_move_to_another_deployment(configure_gateway, fake_openai):
    configure_gateway(_groups(fake_openai, {"retry_policy": {"AuthenticationErrorRetries": 0}}))
    fake_openai.fail_next(status=401, path_contains="/chat/completions")

    with pytest.raises(UpstreamAuthenticationError):
        send_chat("primary")

    assert len(fake_openai.requests) == 1


def test_a_bad_request_is_retried_only_when_the_policy_asks(configure_gateway, fake_openai):
    bad = {"error": {"message": "flaky validation", "type": "invalid_request_error", "param": None, "code": None}}
    configure_gateway(_groups(fake_openai, {"num_retries": 5, "retry_policy": {"BadRequestErrorRetries": 1}}))
    fake_openai.fail_next(status=400, body=bad, path_contains="/chat/completions")

    _, outcome = send_chat("primary")

    assert (outcome.attempts, outcome.retries, outcome.fallbacks_used) == (2, 1, 0)
    first, second = _prefixes(fake_openai)
    assert first != second  # the retry went to the other deployment

    configure_gateway(_groups(fake_openai, {"num_retries": 5}))
    fake_openai.reset()
    fake_openai.fail_next(status=400, body=bad, path_contains="/chat/completions")
    with pytest.raises(UpstreamBadRequestError):
        send_chat("primary")
    assert len(fake_openai.requests) == 1


# -- timeouts -----------------------------------------------------------------------------------------

def test_the_request_timeout_bounds_the_deployment_timeouts_of_all_attempts(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", timeout=0.3, order=1),
                                      openai_entry("g", fake_openai.url, "b", timeout=0.3, order=2)],
                       "router_settings": {"num_retries": 3, "timeout": 30}})
    fake_openai.fail_next(kind="hang", seconds=2.0, path_contains="/a/")
    fake_openai.fail_next(kind="hang", seconds=2.0, path_contains="/b/")
    started = time.monotonic()

    with pytest.raises(UpstreamTimeoutError):
        route(model_group="g", operation="chat", call=chat_call, timeout=0.45)

    elapsed = time.monotonic() - started
    # a had its full 0.3 s; b only what was left of the request's 0.45 s; nothing was tried after.
    assert 0.45 <= elapsed < 0.9
    assert _prefixes(fake_openai) == ["a", "b"]


def test_a_stream_timeout_also_bounds_the_silence_between_chunks(configure_gateway, fake_openai):
    configure_gateway({"model_list": [openai_entry("g", fake_openai.url, "a", stream_timeout=0.2)]})
    fake_openai.stream_interval = 1.0

    def open_stream(deployment, target, deadline, first_chunk_timeout):
        stream = deployment.adapter.chat_stream(target, {**CHAT_BODY, "stream": True}, deadline, first_chunk_timeout)
        return stream, next(stream.chunks)

    (stream, first), outcome = route(model_group="g", operation="chat", call=open_stream)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        next(stream.chunks)
    stream.close()
    outcome.finish()

    assert b'"role": "assistant"' in first
    assert 0.2 <= time.monotonic() - started < 0.9
