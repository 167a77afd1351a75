"""The file-holding half of the Google fake: the Gemini Files API and the Cloud Storage JSON API.

Served by `FakeGoogle` (tests/fakes/gemini_server.py) on the same port as the model routes:

- Gemini Files API, authenticated by `x-goog-api-key`:
  `POST /upload/v1beta/files` with `X-Goog-Upload-Protocol: resumable` and `X-Goog-Upload-Command: start`
  opens an upload session (the announced length and type come from `X-Goog-Upload-Header-Content-*`,
  the display name from the JSON body) and answers its URL in `X-Goog-Upload-URL`; a `POST` of the
  bytes to that URL (`X-Goog-Upload-Command: upload, finalize`, `X-Goog-Upload-Offset: 0`) creates
  the file and answers `{"file": {...}}`. The session URL is the credential for that step, as at
  Google. `GET /v1beta/files/<id>` answers the file; `DELETE` removes it. A file Google does not know
  gets Google's real answer: 403 `PERMISSION_DENIED` "... or it may not exist".
  A new file is `PROCESSING` for `processing_polls` GETs (0: `ACTIVE` at once), then `processing_outcome`.
- Cloud Storage, authenticated by a bearer token the fake's OAuth endpoint issued:
  `POST /upload/storage/v1/b/<bucket>/o?uploadType=media&name=<object>` stores the body
  (`ifGenerationMatch=0` refuses to replace an object, 412), `GET /storage/v1/b/<bucket>/o/<object>`
  answers its metadata, `DELETE` removes it (404 when it does not exist). Only `buckets` exist.

Stored bytes stay in `files_content` and `objects` so tests can compare them with what was sent.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FILE_LIFETIME_SECONDS = 48 * 3600
DEFAULT_BUCKET = "gatehouse-test-bucket"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def google_time(epoch: float, fraction_digits: int = 6) -> str:
    """An RFC 3339 UTC timestamp as Google writes them (`2025-01-02T03:04:05.123456Z`)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_digits:
        nanos = min(int((epoch % 1) * 1e9), 999_999_999)
        text += "." + f"{nanos:09d}"[:fraction_digits]
    return text + "Z"


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    generation: int


@dataclass
class GoogleFiles:
    """State of both file APIs (one per `FakeGoogle`); `reset()` forgets it all."""

    base_url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: dict[str, dict] = field(default_factory=dict)  # "files/<id>" -> the Files API resource
    files_content: dict[str, bytes] = field(default_factory=dict)
    polls_left: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)  # upload id -> announced metadata
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    buckets: set[str] = field(default_factory=lambda: {DEFAULT_BUCKET})
    processing_polls: int = 0
    processing_outcome: str = "ACTIVE"
    fraction_digits: int = 6
    generation: int = 1700000000000000

    def reset(self) -> None:
        with self.lock:
            self.files.clear()
            self.files_content.clear()
            self.polls_left.clear()
            self.sessions.clear()
            self.objects.clear()
        self.buckets = {DEFAULT_BUCKET}
        self.processing_polls = 0
        self.processing_outcome = "ACTIVE"
        self.fraction_digits = 6

    def object_bytes(self, bucket: str, name: str) -> bytes | None:
        with self.lock:
            stored = self.objects.get((bucket, name))
        return stored.data if stored else None

    # -- Gemini Files API ---------------------------------------------------------------------------
    def start_upload(self, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        if headers.get("x-goog-upload-protocol") != "resumable" or headers.get("x-goog-upload-command") != "start":
            return 400, _google_error(400, "INVALID_ARGUMENT", "Expected a resumable upload start."), {}
        length = headers.get("x-goog-upload-header-content-length", "")
        if not length.isdigit():
            return 400, _google_error(400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length is required."), {}
        file = body.get("file") if isinstance(body, dict) else None
        display_name = file.get("display_name") or file.get("displayName") if isinstance(file, dict) else None
        upload_id = "ABg5-" + secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[upload_id] = {"length": int(length), "display_name": display_name,
                                        "mime_type": headers.get("x-goog-upload-header-content-type")}
        url = f"{self.base_url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return 200, "", {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active",
                         "X-GUploader-UploadID": upload_id}

    def finish_upload(self, upload_id: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict]:
        with self.lock:
            session = self.sessions.pop(upload_id, None)
        if session is None:
            return 404, _google_error(404, "NOT_FOUND", "Unknown upload session."), {}
        if headers.get("x-goog-upload-command") != "upload, finalize" or headers.get("x-goog-upload-offset") != "0":
            return 400, _google_error(400, "INVALID_ARGUMENT", "Expected one 'upload, finalize' at offset 0."), {}
        if len(raw) != session["length"]:
            return 400, _google_error(400, "INVALID_ARGUMENT", "The upload does not have the announced length."), {}
        now = time.time()
        file_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        name = f"files/{file_id}"
        resource = {
            "name": name, "mimeType": session["mime_type"] or "application/octet-stream", "sizeBytes": str(len(raw)),
            "createTime": google_time(now, self.fraction_digits), "updateTime": google_time(now, self.fraction_digits),
            "expirationTime": google_time(now + FILE_LIFETIME_SECONDS, self.fraction_digits),
            "sha256Hash": base64.b64encode(hashlib.sha256(raw).hexdigest().encode()).decode(),
            "uri": f"{self.base_url}/v1beta/{name}",
            "state": "PROCESSING" if self.processing_polls else self.processing_outcome,
            "source": "UPLOADED",
        }
        if session["display_name"]:
            resource["displayName"] = session["display_name"]
        with self.lock:
            self.files[name] = resource
            self.files_content[name] = raw
            self.polls_left[name] = self.processing_polls
        return 200, {"file": dict(resource)}, {"X-Goog-Upload-Status": "final"}

    def get_file(self, name: str) -> tuple[int, Any]:
        with self.lock:
            resource = self.files.get(name)
            if resource is None:
                return 403, _missing_file(name)
            if resource["state"] == "PROCESSING":
                self.polls_left[name] -= 1
                if self.polls_left[name] < 0:
                    resource["state"] = self.processing_outcome
            return 200, dict(resource)

    def delete_file(self, name: str) -> tuple[int, Any]:
        with self.lock:
            if self.files.pop(name, None) is None:
                return 403, _missing_file(name)
            self.files_content.pop(name, None)
            self.polls_left.pop(name, None)
        return 200, {}

    # -- Cloud Storage JSON API ---------------------------------------------------------------------
    def put_object(self, bucket: str, query: dict[str, list[str]], headers: dict[str, str],
                   raw: bytes) -> tuple[int, Any]:
        if query.get("uploadType") != ["media"]:
            return 400, _storage_error(400, "Upload requests must specify an uploadType.", "required")
        name = (query.get("name") or [""])[0]
        if not name:
            return 400, _storage_error(400, "Required parameter: name", "required")
        if bucket not in self.buckets:
            return 404, _storage_error(404, "The specified bucket does not exist.", "notFound")
        with self.lock:
            if query.get("ifGenerationMatch") == ["0"] and (bucket, name) in self.objects:
                return 412, _storage_error(412, "At least one of the pre-conditions you specified did not hold.",
                                           "conditionNotMet")
            self.generation += 1
            stored = StoredObject(raw, headers.get("content-type", "application/octet-stream"), self.generation)
            self.objects[(bucket, name)] = stored
        return 200, _object_resource(self.base_url, bucket, name, stored)

    def get_object(self, bucket: str, name: str) -> tuple[int, Any]:
        with self.lock:
            stored = self.objects.get((bucket, name))
        if stored is None:
            return 404, _storage_error(404, f"No such object: {bucket}/{name}", "notFound")
        return 200, _object_resource(self.base_url, bucket, name, stored)

    def delete_object(self, bucket: str, name: str) -> tuple[int, Any]:
        with self.lock:
            if self.objects.pop((bucket, name), None) is None:
                return 404, _storage_error(404, f"No such object: {bucket}/{name}", "notFound")
        return 204, None


def route(files: GoogleFiles, method: str, full_path: str, headers: dict[str, str], body: Any, raw: bytes,
          token_valid, api_key: str) -> tuple[int, Any, dict[str, str]] | None:
    """Answer a file route as (status, payload, headers), or None when the path is not one of them.

    `payload` is a dict (JSON), a string (sent as is) or None (no body, for 204).
    """
    parts = urlsplit(full_path)
    path, query = parts.path, parse_qs(parts.query)
    if path == "/upload/v1beta/files" and method == "POST":
        if "upload_id" in query:
            return files.finish_upload(query["upload_id"][0], headers, raw)
        if headers.get("x-goog-api-key") != api_key:
            return 400, _bad_key(), {}
        return files.start_upload(headers, body)
    if path.startswith("/v1beta/files/") and method in ("GET", "DELETE"):
        if headers.get("x-goog-api-key") != api_key:
            return 400, _bad_key(), {}
        name = path[len("/v1beta/"):]
        status, payload = files.get_file(name) if method == "GET" else files.delete_file(name)
        return status, payload, {}
    storage_upload = path.startswith("/upload/storage/v1/b/") and path.endswith("/o") and method == "POST"
    storage_object = path.startswith("/storage/v1/b/") and "/o/" in path and method in ("GET", "DELETE")
    if not (storage_upload or storage_object):
        return None
    if not token_valid(headers.get("authorization")):
        return 401, _storage_error(401, "Invalid Credentials", "authError"), {}
    if storage_upload:
        bucket = unquote(path[len("/upload/storage/v1/b/"):-len("/o")])
        status, payload = files.put_object(bucket, query, headers, raw)
        return status, payload, {}
    bucket, _, name = path[len("/storage/v1/b/"):].partition("/o/")
    bucket, name = unquote(bucket), unquote(name)
    status, payload = files.get_object(bucket, name) if method == "GET" else files.delete_object(bucket, name)
    return status, payload, {}


def _object_resource(base_url: str, bucket: str, name: str, stored: StoredObject) -> dict:
    return {"kind": "storage#object", "id": f"{bucket}/{name}/{stored.generation}",
            "selfLink": f"{base_url}/storage/v1/b/{bucket}/o/{name}", "name": name, "bucket": bucket,
            "generation": str(stored.generation), "metageneration": "1", "contentType": stored.content_type,
            "storageClass": "STANDARD", "size": str(len(stored.data)),
            "md5Hash": base64.b64encode(hashlib.md5(stored.data).digest()).decode(),  # noqa: S324 - GCS's own field
            "timeCreated": google_time(time.time()), "updated": google_time(time.time())}


def _google_error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def _missing_file(name: str) -> dict:
    file_id = name.rpartition("/")[2]
    return _google_error(403, "PERMISSION_DENIED",
                         f"You do not have permission to access the File {file_id} or it may not exist.")


def _bad_key() -> dict:
    return {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}


def _storage_error(code: int, message: str, reason: str) -> dict:
    """Cloud Storage's JSON API error (no `status` field, unlike the Gemini API)."""
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}
