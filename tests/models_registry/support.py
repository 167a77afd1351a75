"""Helpers that drive the router the way the API views do: a real adapter call per attempt."""
from __future__ import annotations

from models_registry.router import RouteOutcome, route
from providers.base import UpstreamResponse

CHAT_BODY = {"model": "client-side-name", "messages": [{"role": "user", "content": "hi"}]}


def chat_call(deployment, target, deadline, first_chunk_timeout) -> UpstreamResponse:
    """What `proxy_api.relay.respond` does for a plain chat completion."""
    return deployment.adapter.chat(target, CHAT_BODY, deadline)


def stream_call(deployment, target, deadline, first_chunk_timeout):
    """What `proxy_api.relay.respond_streaming` does: open the stream and read its first chunk inside the attempt."""
    stream = deployment.adapter.chat_stream(target, {**CHAT_BODY, "stream": True}, deadline, first_chunk_timeout)
    try:
        first = next(stream.chunks, None)
    except BaseException:
        stream.close()
        raise
    rest = list(stream.chunks)
    stream.close()
    return [first, *rest]


def send_chat(model_group: str, **options) -> tuple[UpstreamResponse, RouteOutcome]:
    return route(model_group=model_group, operation="chat", call=chat_call, **options)


def openai_entry(group: str, fake_url: str, prefix: str, **params) -> dict:
    """A deployment on the fake whose requests are told apart by a path prefix (`/<prefix>/v1/...`)."""
    return {
        "model_name": group,
        "litellm_params": {"model": f"openai/{prefix}-model", "api_base": f"{fake_url}/{prefix}/v1",
                           "api_key": f"sk-{prefix}", **params},
        "model_info": {"id": prefix},
    }
