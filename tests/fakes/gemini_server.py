"""A real HTTP server on 127.0.0.1 that speaks the Gemini API, Vertex AI and Google's OAuth token endpoint.

- Gemini API: `POST /v1beta/models/<model>:generateContent | :streamGenerateContent?alt=sse |
  :embedContent | :batchEmbedContents`, authenticated by `x-goog-api-key` (a wrong key gets Google's
  400 `API_KEY_INVALID`, as the real API answers).
- Vertex AI: `POST /v1/projects/<p>/locations/<l>/publishers/google/models/<model>:generateContent |
  :streamGenerateContent?alt=sse | :predict`, authenticated by a bearer token this server issued and
  that has not expired (otherwise 401 `UNAUTHENTICATED`).
- `POST /token`: the OAuth JWT-bearer grant. The assertion's RS256 signature is verified with the
  public key of a service account registered by `service_account_key()`, and its `iss`, `aud`
  (Google's token audience), `scope` and `exp` are checked; tokens live `token_lifetime` seconds and
  `token_requests` counts calls.

- Files: the Gemini Files API (resumable uploads) and the Cloud Storage JSON API, served from
  tests/fakes/google_files.py; their state is `fake.files`.

Answers are derived from the request (a text reply, or a `functionCall` of the first declared function
when tools are offered) unless a test queues exact upstream bodies with `script()`. Faults are queued
with `fail_next()`. Every request is recorded with its method, path, query, headers and body.
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.google_files import GoogleFiles, route
from tests.fakes.recording import RecordedRequest, RecordingHandler

GEMINI_KEY = "AIza-fake-gemini-key-0123456789"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience Google's token endpoint expects in service-account assertions, whatever `token_uri` says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
USAGE = {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}


@dataclass
class Fault:
    """One scripted misbehaviour for the next request whose path contains `path_contains`.

    kind: "status" (answer `status` with `body`/`headers`), "hang" (sleep `seconds`, then answer),
    "reset" (close the socket), "stream_break" (send `after_events` events, then drop the connection),
    "stream_error" (send `after_events` events, then an error object as an event, then close),
    "no_finish" (stream every event but the one carrying `finishReason`).
    """

    kind: str = "status"
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_events: int = 1
    path_contains: str = ""


def google_error(code: int, status: str, message: str, details: list | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def vector_for(text: str, dimensions: int) -> list[float]:
    """A deterministic vector of float32-exact values (so base64 and floats compare exactly)."""
    seed = sum(text.encode()) or 1
    return [struct.unpack("<f", struct.pack("<f", ((seed * (i + 3)) % 89) / 89.0 - 0.5))[0] for i in range(dimensions)]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGoogle:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.scripted: list[Any] = []
        self.lock = threading.Lock()
        self.public_keys: dict[str, Any] = {}  # service account email -> RSA public key
        self.issued: dict[str, float] = {}  # access token -> expiry (time.time())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_uri = f"{self.url}/token"
        self.files = GoogleFiles(self.url)
        self._defaults()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _defaults(self) -> None:
        self.api_key = GEMINI_KEY
        self.reply = "Hello from the fake Gemini."
        self.stream_pieces = 3
        self.embedding_dimensions = 6
        self.token_lifetime = 3600
        self.token_latency = 0.0
        self.token_requests = 0
        self.rejected_assertions = 0

    def reset(self) -> None:
        """Forget requests, faults and scripts; tokens already issued stay valid until they expire, as at Google."""
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.scripted.clear()
        self.files.reset()
        self._defaults()

    # -- scripting --------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, **fault) -> None:
        with self.lock:
            self.faults.extend(Fault(**fault) for _ in range(count))

    def script(self, *answers: Any) -> None:
        """Queue exact upstream answers: a dict for a plain call, a list of event dicts for a stream."""
        with self.lock:
            self.scripted.extend(answers)

    def service_account_key(self, *, email: str = "gatehouse@fake-project.iam.gserviceaccount.com",
                            project_id: str = "fake-project", key_size: int = 2048) -> dict:
        """A new service-account key whose public half this server trusts, as Google's JSON key file."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        self.public_keys[email] = private_key.public_key()
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": project_id, "private_key_id": "fake-key-id-1",
                "private_key": pem, "client_email": email, "client_id": "1234567890",
                "token_uri": self.token_uri, "auth_uri": "https://accounts.google.com/o/oauth2/auth"}

    def requests_to(self, fragment: str) -> list[RecordedRequest]:
        with self.lock:
            return [record for record in self.requests if fragment in record.path]

    def model_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return [record for record in self.requests if record.path != "/token"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- behaviour --------------------------------------------------------------------------------
    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.path_contains in path:
                    return self.faults.pop(index)
        return None

    def take_script(self) -> Any:
        with self.lock:
            return self.scripted.pop(0) if self.scripted else None

    def verify_assertion(self, assertion: str) -> str | None:
        """The service account email of a valid JWT-bearer assertion, or None."""
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_unb64url(header_b64))
            claims = json.loads(_unb64url(payload_b64))
            key = self.public_keys[claims["iss"]]
            key.verify(_unb64url(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(),
                       hashes.SHA256())
        except Exception:
            return None
        now = time.time()
        audience_ok = claims.get("aud") in (self.token_uri, GOOGLE_TOKEN_AUDIENCE)
        if header.get("alg") != "RS256" or not audience_ok or claims.get("scope") != SCOPE:
            return None
        if not claims.get("iat", now + 1) <= now + 5 or claims.get("exp", 0) < now:
            return None
        return claims["iss"]

    def issue_token(self) -> tuple[str, int]:
        with self.lock:
            self.token_requests += 1
            token = f"ya29.fake-token-{self.token_requests}"
            self.issued[token] = time.time() + self.token_lifetime
        return token, self.token_lifetime

    def token_valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self.lock:
            expiry = self.issued.get(authorization[len("Bearer "):])
        return expiry is not None and expiry > time.time()


def _generate_answer(fake: FakeGoogle, body: dict, model: str) -> dict:
    declarations = [item for tool in body.get("tools") or [] for item in tool.get("functionDeclarations") or []]
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if declarations and mode != "NONE":
        call = {"functionCall": {"name": declarations[0]["name"], "args": {"city": "Paris"}}}
        parts = [call]
    else:
        parts = [{"text": fake.reply}]
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0,
                            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
            "usageMetadata": USAGE, "modelVersion": model, "responseId": "fake-response-1"}


def _stream_events(fake: FakeGoogle, body: dict, model: str) -> list[dict]:
    answer = _generate_answer(fake, body, model)
    parts = answer["candidates"][0]["content"]["parts"]
    base = {"modelVersion": model, "responseId": "fake-response-1"}
    if "functionCall" in parts[0]:
        return [{**base, "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP",
                                         "index": 0}], "usageMetadata": USAGE}]
    text = fake.reply
    size = max(1, -(-len(text) // fake.stream_pieces))
    pieces = [text[start:start + size] for start in range(0, len(text), size)]
    events = [{**base, "candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11}} for piece in pieces[:-1]]
    events.append({**base, "candidates": [{"content": {"parts": [{"text": pieces[-1]}], "role": "model"},
                                           "finishReason": "STOP", "index": 0}], "usageMetadata": USAGE})
    return events


def _make_handler(fake: FakeGoogle):
    class Handler(RecordingHandler):
        def _receive(self) -> tuple[RecordedRequest, Fault | None, bool]:
            """Read and record the request, then play its fault: (record, fault left, answered already)."""
            record = self.read_request(fake, multipart=False)
            parts = urlsplit(self.path)
            if parts.path == "/token":
                return record, None, False
            fault = fake.take_fault(self.path)
            if fault is not None and fault.kind == "hang":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "reset":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.connection.close()
                return record, None, True
            if fault is not None and fault.kind == "status":
                self._json(fault.status, fault.body if fault.body is not None else
                           google_error(fault.status, "INTERNAL", f"fake failure {fault.status}"), fault.headers)
                return record, None, True
            return record, fault, False

        def _file_route(self, record: RecordedRequest) -> bool:
            answer = route(fake.files, self.command, self.path, record.headers, record.body, record.raw,
                           fake.token_valid, fake.api_key)
            if answer is None:
                return False
            status, payload, headers = answer
            if payload is None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(status, payload, headers)
            return True

        def do_GET(self):
            record, _, answered = self._receive()
            if not answered and not self._file_route(record):
                self._json(404, google_error(404, "NOT_FOUND", f"no route {record.path}"))

        do_DELETE = do_GET

        def do_POST(self):
            record, fault, answered = self._receive()
            if answered:
                return
            if record.path == "/token":
                self._token(record.raw)
                return
            if self._file_route(record):
                return
            parts = urlsplit(self.path)
            path, _, method = parts.path.rpartition(":")
            if path.startswith("/v1beta/models/"):
                if record.headers.get("x-goog-api-key") != fake.api_key:
                    self._json(400, google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid "
                                                 "API key.", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                               "reason": "API_KEY_INVALID"}]))
                    return
                model = path[len("/v1beta/models/"):]
            elif path.startswith("/v1/projects/") and "/publishers/google/models/" in path:
                if not fake.token_valid(record.headers.get("authorization")):
                    self._json(401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                                 "credentials. Expected OAuth 2 access token."))
                    return
                model = path.rsplit("/", 1)[1]
            else:
                self._json(404, google_error(404, "NOT_FOUND", f"no route {parts.path}"))
                return
            body = record.body or {}
            if method == "generateContent":
                self._json(200, fake.take_script() or _generate_answer(fake, body, model))
            elif method == "streamGenerateContent" and parse_qs(parts.query).get("alt") == ["sse"]:
                self._stream(fake.take_script() or _stream_events(fake, body, model), fault)
            elif method == "embedContent":
                values = vector_for(body["content"]["parts"][0]["text"],
                                    body.get("outputDimensionality") or fake.embedding_dimensions)
                self._json(200, {"embedding": {"values": values}})
            elif method == "batchEmbedContents":
                self._json(200, {"embeddings": [
                    {"values": vector_for(item["content"]["parts"][0]["text"],
                                          item.get("outputDimensionality") or fake.embedding_dimensions)}
                    for item in body["requests"]]})
            elif method == "predict":
                dimensions = (body.get("parameters") or {}).get("outputDimensionality") or fake.embedding_dimensions
                self._json(200, {"predictions": [
                    {"embeddings": {"values": vector_for(item["content"], dimensions),
                                    "statistics": {"token_count": len(item["content"].split()), "truncated": False}}}
                    for item in body["instances"]], "metadata": {"billableCharacterCount": 10}})
            else:
                self._json(404, google_error(404, "NOT_FOUND", f"unknown method {method}"))

        def _token(self, raw: bytes):
            form = parse_qs(raw.decode())
            if fake.token_latency:
                time.sleep(fake.token_latency)
            assertion = (form.get("assertion") or [""])[0]
            if form.get("grant_type") != [JWT_GRANT] or fake.verify_assertion(assertion) is None:
                with fake.lock:
                    fake.rejected_assertions += 1
                self._json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                return
            token, lifetime = fake.issue_token()
            self._json(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

        def _json(self, status: int, payload: Any, headers: dict | None = None):
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, events: list[dict], fault: Fault | None):
            """Gemini's SSE: `data: <json>` events separated by CRLF blank lines, ended by closing."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            if fault is not None and fault.kind == "no_finish":
                events = events[:-1]
            try:
                for index, event in enumerate(events):
                    if fault is not None and fault.kind in ("stream_break", "stream_error") \
                            and index >= fault.after_events:
                        if fault.kind == "stream_error":
                            error = fault.body or google_error(500, "INTERNAL", "fake failure mid-stream")
                            self.wfile.write(b"data: " + json.dumps(error).encode() + b"\r\n\r\n")
                            self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Handler
