"""Where Gemini and Vertex AI deployments keep their copies of managed files, and how those copies are named.

- Gemini API: the Files API (`files/<id>`, read by prompts through its URI). Files exist only in
  `v1beta`, are processed before use (`PROCESSING` -> `ACTIVE` or `FAILED`) and expire after 48 hours;
  the adapter is providers/gemini.py.
- Vertex AI has no Files API: prompts read `gs://bucket/object` URIs, so a copy is an object in the
  deployment's Cloud Storage bucket, written with the JSON API's media upload. A deployment opts in
  with `litellm_params.gcs_bucket_name` (LiteLLM's name; its older `bucket_name` is read too) and may
  set `gcs_object_prefix` (default `gatehouse`) and `vertex_storage_api_base` (default
  `https://storage.googleapis.com`; a private endpoint, or a fake in tests). Objects are named
  `<prefix>/<random>/<filename>`: the random segment makes names unguessable and unique, the
  filename (reduced to safe characters) helps an operator browsing the bucket. Without a bucket a
  Vertex AI deployment cannot hold files: uploads fail with `FilesNotConfiguredError`, recorded on
  that copy, and the router tries another deployment of the group.
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from providers.base import DeploymentTarget
from providers.errors import ProviderError, UpstreamBadRequestError, UpstreamServerError
from providers.files import ProviderFileRef

# --- Gemini Files API ---------------------------------------------------------------------------------

# The Files API exists only in v1beta, whatever version a deployment's chat calls use.
FILES_API_VERSION = "v1beta"
DISPLAY_NAME_MAX_CHARS = 512
FILE_NAME_PATTERN = re.compile(r"^files/[a-z0-9][a-z0-9-]{0,63}$")
# Polling a file Gemini is still processing: the first wait, doubled up to the second.
PROCESSING_POLL_FIRST_SECONDS = 0.2
PROCESSING_POLL_MAX_SECONDS = 2.0
# Deleting a copy that could not be used, after the request's own deadline may have passed.
CLEANUP_SECONDS = 5.0
GOOGLE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def gemini_file_ref(resource: dict, mime_type: str) -> ProviderFileRef:
    """The reference to a Files API file: `name` is what deletes it, `uri` what a prompt quotes.

    The MIME type Gemini recorded is kept (it is the one `fileData` must name); `mime_type` is the fallback.
    """
    name, uri = resource.get("name"), resource.get("uri")
    if not isinstance(name, str) or not FILE_NAME_PATTERN.match(name) or not isinstance(uri, str) or not uri:
        raise UpstreamServerError("The Gemini Files API answered without the file's name and URI.")
    recorded = resource.get("mimeType")
    return ProviderFileRef(file_id=name, uri=uri, mime_type=recorded if isinstance(recorded, str) and recorded
                           else mime_type, expires_at=parse_google_time(resource.get("expirationTime")))


def parse_google_time(value: Any) -> int | None:
    """Epoch seconds of an RFC 3339 timestamp; Google writes up to nanoseconds, which Python cannot parse."""
    match = GOOGLE_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    zone = match.group(3)
    try:
        moment = datetime.fromisoformat(match.group(1) + ("+00:00" if zone in ("Z", "z") else zone))
    except ValueError:
        return None
    return int(moment.timestamp())


def same_origin(first: str, second: str) -> bool:
    """Whether two URLs reach the same scheme, host and port (credentials never travel further)."""
    one, other = urlsplit(first), urlsplit(second)
    return (one.scheme, one.netloc.lower()) == (other.scheme, other.netloc.lower())


# --- Vertex AI: Cloud Storage ---------------------------------------------------------------------------

STORAGE_API_BASE = "https://storage.googleapis.com"
DEFAULT_OBJECT_PREFIX = "gatehouse"
# Cloud Storage bucket names: lowercase letters, digits, dashes, underscores and dots, 3 to 222 characters.
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
SEGMENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
UNSAFE_FILENAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
OBJECT_FILENAME_MAX_CHARS = 100


class FilesNotConfiguredError(ProviderError):
    """A Vertex AI deployment asked to hold a file has no usable Cloud Storage bucket configured.

    The operator must fix the deployment; another deployment of the group may hold the file meanwhile.
    """

    failover = True
    status_code = 503
    type = "api_error"
    code = "deployment_misconfigured"


def storage_location(target: DeploymentTarget) -> tuple[str, str]:
    """The deployment's bucket and object prefix (ending with `/`), checked before anything is sent."""
    params = target.params
    bucket = params.get("gcs_bucket_name") or params.get("bucket_name")
    if not bucket:
        raise FilesNotConfiguredError(
            f"Vertex AI deployment '{target.deployment_id}' cannot hold files: set litellm_params.gcs_bucket_name "
            "to the Cloud Storage bucket its copies go to.")
    if not isinstance(bucket, str) or not BUCKET_PATTERN.match(bucket):
        raise FilesNotConfiguredError(
            f"The gcs_bucket_name of Vertex AI deployment '{target.deployment_id}' is not a Cloud Storage bucket name.")
    prefix = params.get("gcs_object_prefix", DEFAULT_OBJECT_PREFIX)
    segments = [segment for segment in str(prefix or "").strip("/").split("/") if segment]
    if any(not SEGMENT_PATTERN.match(segment) or segment in (".", "..") for segment in segments):
        raise FilesNotConfiguredError(
            f"The gcs_object_prefix of Vertex AI deployment '{target.deployment_id}' must be path segments of "
            "letters, digits, '.', '_' and '-'.")
    return bucket, "".join(f"{segment}/" for segment in segments)


def storage_base(target: DeploymentTarget) -> str:
    return str(target.params.get("vertex_storage_api_base") or STORAGE_API_BASE).rstrip("/")


def new_object_name(prefix: str, filename: str) -> str:
    """`<prefix><random>/<filename>`: unguessable, unique, and still readable in the bucket's listing."""
    safe = UNSAFE_FILENAME_CHARACTERS.sub("_", filename).strip("._")[-OBJECT_FILENAME_MAX_CHARS:] or "file"
    return f"{prefix}{secrets.token_urlsafe(18)}/{safe}"


def split_gs_uri(uri: str | None) -> tuple[str, str]:
    """`gs://bucket/object` as (bucket, object); anything else is not a copy this adapter made."""
    bucket, _, name = (uri or "")[len("gs://"):].partition("/")
    if not (uri or "").startswith("gs://") or not BUCKET_PATTERN.match(bucket) or not name:
        raise UpstreamBadRequestError("This copy does not name a Cloud Storage object (gs://bucket/object).",
                                      code="invalid_file_ref")
    return bucket, name
