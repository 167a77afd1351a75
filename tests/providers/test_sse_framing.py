"""Server-sent-event framing in `providers/http.py`, against a real socket that cuts the body where we say.

`ScriptedServer` sends each piece in its own write with a pause in between, so each piece arrives in
its own socket read: an event split across reads, a CRLF cut between `\\r` and `\\n`, a trailing event
with no blank line before the connection closes.
"""
from __future__ import annotations

import pytest

from providers.errors import UpstreamConnectionError
from providers.http import Deadline, iter_sse_events, send, sse_data
from providers.registry import adapter_for
from tests.providers.helpers import drain, target_for

CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n")


def events_from(server, pieces: list[bytes], **script) -> list[bytes]:
    server.script(pieces, **script)
    deadline = Deadline.after(10)
    response = send("GET", f"{server.url}/events", headers={}, deadline=deadline)
    try:
        return list(iter_sse_events(response, deadline))
    finally:
        response.close()


def http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_events_are_split_on_blank_lines_when_many_arrive_in_one_read(scripted_server):
    assert events_from(scripted_server, [b"data: 1\n\ndata: 2\n\ndata: 3\n\n"]) == [
        b"data: 1", b"data: 2", b"data: 3"]


def test_crlf_line_endings_are_normalised(scripted_server):
    assert events_from(scripted_server, [b'data: {"a": 1}\r\n\r\ndata: {"a": 2}\r\n\r\n']) == [
        b'data: {"a": 1}', b'data: {"a": 2}']


def test_a_crlf_cut_between_its_cr_and_lf_across_reads_still_ends_the_event(scripted_server):
    pieces = [b"data: 1\r", b"\n\r", b"\ndata: 2\r\n", b"\r", b"\n"]
    assert events_from(scripted_server, pieces) == [b"data: 1", b"data: 2"]


def test_an_event_split_inside_its_field_name_and_value_is_reassembled(scripted_server):
    pieces = [b"da", b'ta: {"x"', b": 1}\n", b"\n", b"data: 2\n\n"]
    assert events_from(scripted_server, pieces) == [b'data: {"x": 1}', b"data: 2"]


def test_a_stream_delivered_one_byte_per_read_gives_the_same_events(scripted_server):
    body = b"event: message\r\ndata: one\r\n\r\n: ping\r\n\r\ndata: two\r\ndata: three\r\n\r\n"
    pieces = [body[index:index + 1] for index in range(len(body))]
    assert events_from(scripted_server, pieces, pause=0.002) == [
        b"event: message\ndata: one", b": ping", b"data: two\ndata: three"]


def test_extra_blank_lines_between_events_yield_no_empty_events(scripted_server):
    assert events_from(scripted_server, [b"\n\ndata: 1\n\n\n\n", b"\n\ndata: 2\n\n"]) == [b"data: 1", b"data: 2"]


def test_a_trailing_event_without_a_blank_line_is_yielded_when_the_body_ends(scripted_server):
    assert events_from(scripted_server, [b"data: 1\n\n", b"data: last"]) == [b"data: 1", b"data: last"]
    assert events_from(scripted_server, [b"data: 1\r\n\r\n", b"data: last\r\n"]) == [b"data: 1", b"data: last"]


def test_chunked_transfer_encoding_with_chunks_cut_mid_event(scripted_server):
    pieces = [http_chunk(b"data: al"), http_chunk(b"pha\r\n\r\nda"), http_chunk(b"ta: beta\r\n\r\n"), b"0\r\n\r\n"]
    assert events_from(scripted_server, pieces, head=CHUNKED_HEAD) == [b"data: alpha", b"data: beta"]


@pytest.mark.parametrize(("event", "payload"), [
    (b"data: {\"a\": 1}", b'{"a": 1}'),
    (b"data:{\"a\": 1}", b'{"a": 1}'),
    (b"data: [DONE]", b"[DONE]"),
    (b"data: line one\ndata: line two", b"line one\nline two"),
    (b": a comment\ndata: after comment", b"after comment"),
    (b"event: completion\nid: 42\nretry: 1000\ndata: x", b"x"),
    (b": keep-alive", None),
    (b"event: ping", None),
    (b"data:", b""),
])
def test_sse_data_is_the_events_data_lines_joined_or_none(event, payload):
    assert sse_data(event) == payload


def test_the_openai_adapter_relays_a_crlf_stream_with_comments_multiline_data_and_a_trailing_done(scripted_server):
    """What a real compatible server may send: CRLF, keep-alive comments, `event:`/`id:` fields, a JSON
    payload spread over two data lines, and `[DONE]` as the last bytes with no blank line after it."""
    scripted_server.script([
        b": keep-alive\r\n\r\n",
        b'event: message\r\nid: 1\r\ndata: {"choices": [{"delta": {"content": "A"}}]}\r\n\r\n',
        b'data: {"choices": [{"delta":\r\ndata: {"content": "B"}}]}\r\n\r',
        b"\n: ping\r\n\r\n",
        b"data: [DONE]",
    ])
    stream = adapter_for("openai").chat_stream(
        target_for(scripted_server.url), {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
        Deadline.after(10), 5)
    assert drain(stream) == [b'{"choices": [{"delta": {"content": "A"}}]}',
                             b'{"choices": [{"delta":\n{"content": "B"}}]}']
    request = scripted_server.received[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


def test_the_openai_adapter_ignores_anything_after_done(scripted_server):
    scripted_server.script([b"data: {\"n\": 1}\n\ndata: [DONE]\n\n", b"data: {\"n\": 2}\n\n"])
    stream = adapter_for("openai").chat_stream(target_for(scripted_server.url), {"stream": True},
                                               Deadline.after(10), 5)
    assert drain(stream) == [b'{"n": 1}']


def test_the_openai_adapter_treats_a_body_that_ends_without_done_as_cut_off(scripted_server):
    scripted_server.script([b"data: {\"n\": 1}\r\n\r\n", b"data: {\"n\": 2}"])
    stream = adapter_for("openai").chat_stream(target_for(scripted_server.url), {"stream": True},
                                               Deadline.after(10), 5)
    assert next(stream.chunks) == b'{"n": 1}'
    assert next(stream.chunks) == b'{"n": 2}'
    with pytest.raises(UpstreamConnectionError) as caught:
        next(stream.chunks)
    stream.close()
    assert caught.value.message == "The upstream stream ended before it was complete."
