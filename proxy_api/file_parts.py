"""Gatehouse file ids inside a request, swapped for the chosen deployment's own copy on every attempt.

A client quotes a managed file by its Gatehouse id: on `/chat/completions` a content part
`{"type": "file", "file": {"file_id": "file-…"}}`, on `/v1/messages` a `document` or `image` block whose
`source` is `{"type": "file", "file_id": "file-…"}`. The id means nothing to any provider, so:

- before routing, every quoted id is looked up for the caller (`managed_file_get_for_caller`): an
  unknown, deleted or malformed id, or someone else's file, is the `file_not_found` 404 and nothing
  is sent anywhere. Any id starting with `file-` is taken for a Gatehouse id (a provider's own
  `file-…` id cannot be passed through the gateway); other ids (a Gemini file URI, `gs://…`) and
  inline `file_data` pass through untouched.
- the router is asked to prefer the deployments that already hold a copy of every quoted file
  (`provider_copies_ready`), so a request costs no upload while such a deployment is usable.
- each attempt rewrites a copy of the body for the deployment it is about to call (the client's body
  is never changed, so a retry elsewhere starts from the original): the deployment's copy comes from
  `provider_copy_ensure`, which uploads one now when there is none yet (a deployment added after the
  upload, an expired Gemini copy), and the part becomes whatever that adapter's translation reads
  (`Provider.file_part`: OpenAI's file id, Gemini's `fileData` URI, ...). A failed upload is a
  `ProviderError`, so the router tries another deployment as for any failed call.
- a deployment whose provider cannot hold files (an OpenAI-compatible server, say) gets the bytes
  inline instead, as base64 `file_data`, up to `INLINE_FILE_MAX_BYTES`.

On `/v1/messages` an Anthropic deployment is spoken to natively: the block keeps its shape and its
`file_id` becomes the Anthropic copy's (the adapter adds the Files API beta header to such a call).
Other deployments get the request translated to chat, where the block is a file part like any other.

A request that quotes no file pays a walk over its content parts and nothing else: no query.
"""
from __future__ import annotations

import base64
from collections.abc import Iterator

from files_registry.models import ManagedFile
from files_registry.selectors import managed_file_get_for_caller, provider_copies_ready
from files_registry.services import provider_copy_ensure
from files_registry.storage import stored_bytes_open
from keys.principal import Caller
from models_registry.snapshot import RoutableDeployment
from providers.errors import InvalidRequestError
from providers.files import ProviderFileRef
from providers.http import Deadline

GATEHOUSE_FILE_PREFIX = "file-"
# The largest file sent inline to a deployment that cannot hold files (the bytes travel base64 in the body).
INLINE_FILE_MAX_BYTES = 20 * 1024 * 1024
ANTHROPIC_MEDIA_BLOCKS = ("document", "image")


# --- finding quoted ids (cheap: no query) -------------------------------------------------------------

def _content_lists(body: dict) -> Iterator[list]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            yield message["content"]


def chat_file_id(part) -> str | None:
    """The Gatehouse id a chat content part quotes, if it is a `file` part quoting one."""
    if not isinstance(part, dict) or part.get("type") != "file":
        return None
    file = part.get("file")
    file_id = file.get("file_id") if isinstance(file, dict) else None
    return file_id if isinstance(file_id, str) and file_id.startswith(GATEHOUSE_FILE_PREFIX) else None


def anthropic_file_id(block) -> str | None:
    """The Gatehouse id an Anthropic `document`/`image` block quotes through a `file` source, if any."""
    if not isinstance(block, dict) or block.get("type") not in ANTHROPIC_MEDIA_BLOCKS:
        return None
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "file":
        return None
    file_id = source.get("file_id")
    return file_id if isinstance(file_id, str) and file_id.startswith(GATEHOUSE_FILE_PREFIX) else None


def _anthropic_blocks(content: list) -> Iterator[dict]:
    """A message's blocks, and those inside its `tool_result` blocks (a tool may return a document)."""
    for block in content:
        if isinstance(block, dict):
            yield block
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                yield from (inner for inner in block["content"] if isinstance(inner, dict))


def chat_file_ids(body: dict) -> list[str]:
    """Every Gatehouse id the chat request's messages quote, once each, in order of appearance."""
    found: dict[str, None] = {}
    for content in _content_lists(body):
        for part in content:
            file_id = chat_file_id(part)
            if file_id is not None:
                found[file_id] = None
    return list(found)


def messages_file_ids(body: dict) -> list[str]:
    """Every Gatehouse id an Anthropic Messages request quotes, once each, in order of appearance."""
    found: dict[str, None] = {}
    for content in _content_lists(body):
        for block in _anthropic_blocks(content):
            file_id = anthropic_file_id(block)
            if file_id is not None:
                found[file_id] = None
    return list(found)


# --- resolving them --------------------------------------------------------------------------------------

class RequestFiles:
    """The managed files one request quotes, and each deployment's copy of them once an attempt needs it."""

    def __init__(self, files: dict[str, ManagedFile], prefer_deployments: frozenset[str] | None) -> None:
        self.files = files
        self.prefer_deployments = prefer_deployments
        self._refs: dict[tuple[str, str], ProviderFileRef] = {}

    def copy_for(self, file_id: str, deployment: RoutableDeployment, deadline: Deadline) -> ProviderFileRef:
        """`deployment`'s copy of the file, uploaded now if it has none (kept for a retry on the same one)."""
        key = (file_id, deployment.id)
        ref = self._refs.get(key)
        if ref is None:
            ref = provider_copy_ensure(managed_file=self.files[file_id], deployment=deployment, deadline=deadline)
            self._refs[key] = ref
        return ref

    # -- /chat/completions (and /v1/messages translated to chat) --
    def chat_body(self, body: dict, deployment: RoutableDeployment, deadline: Deadline) -> dict:
        """A copy of `body` whose Gatehouse file parts name `deployment`'s copies; `body` is left as it was."""

        def replace(part):
            file_id = chat_file_id(part)
            if file_id is None or file_id not in self.files:
                return part
            if not deployment.adapter.supports_files:
                return inline_chat_part(self.files[file_id], part, deployment)
            return deployment.adapter.file_part(self.copy_for(file_id, deployment, deadline), part)

        return _rewritten(body, replace)

    # -- /v1/messages on an Anthropic deployment --
    def native_messages_body(self, body: dict, deployment: RoutableDeployment, deadline: Deadline) -> dict:
        """A copy of an Anthropic body whose `file` sources name `deployment`'s own Anthropic file ids."""

        def replace(block):
            file_id = anthropic_file_id(block)
            if file_id is None or file_id not in self.files:
                return block
            ref = self.copy_for(file_id, deployment, deadline)
            return {**block, "source": {**block["source"], "file_id": ref.file_id}}

        return _rewritten(body, replace, nested=True)


def chat_files(*, caller: Caller, body: dict) -> RequestFiles | None:
    """The managed files a chat request quotes (None, without a query, when it quotes none)."""
    return _resolved(caller, chat_file_ids(body))


def messages_files(*, caller: Caller, body: dict) -> RequestFiles | None:
    """The managed files an Anthropic Messages request quotes (None, without a query, when it quotes none)."""
    return _resolved(caller, messages_file_ids(body))


def _resolved(caller: Caller, file_ids: list[str]) -> RequestFiles | None:
    if not file_ids:
        return None
    files = {file_id: managed_file_get_for_caller(caller=caller, file_id=file_id) for file_id in file_ids}
    ready = provider_copies_ready(managed_file_ids=file_ids)
    holding_all = None
    for file_id in file_ids:
        holders = ready.get(file_id, set())
        holding_all = set(holders) if holding_all is None else holding_all & holders
    return RequestFiles(files, frozenset(holding_all) if holding_all else None)


def _rewritten(body: dict, replace, *, nested: bool = False) -> dict:
    """`body` with each content part passed through `replace`: new lists and dicts wherever one changed."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    changed = False
    rewritten_messages = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            rewritten_messages.append(message)
            continue
        parts = [_replace_part(part, replace, nested) for part in content]
        if any(new is not old for new, old in zip(parts, content, strict=True)):
            changed = True
            message = {**message, "content": parts}
        rewritten_messages.append(message)
    return {**body, "messages": rewritten_messages} if changed else body


def _replace_part(part, replace, nested: bool):
    if nested and isinstance(part, dict) and part.get("type") == "tool_result" and isinstance(part.get("content"),
                                                                                             list):
        inner = [replace(block) for block in part["content"]]
        if any(new is not old for new, old in zip(inner, part["content"], strict=True)):
            return {**part, "content": inner}
        return part
    return replace(part)


# --- inline, for deployments that cannot hold a file ---------------------------------------------------

def _inline_base64(managed_file: ManagedFile, deployment: RoutableDeployment) -> str:
    if managed_file.bytes > INLINE_FILE_MAX_BYTES:
        raise InvalidRequestError(
            f"The file {managed_file.id} ({managed_file.bytes} bytes) cannot be sent to model "
            f"`{deployment.model_name}`: its provider ({deployment.provider}) cannot hold files, and files are sent "
            f"inline only up to {INLINE_FILE_MAX_BYTES} bytes.",
            param="messages", code="file_too_large_for_model")
    with stored_bytes_open(managed_file.stored_name) as stored:
        return base64.b64encode(stored.read()).decode("ascii")


def inline_chat_part(managed_file: ManagedFile, part: dict, deployment: RoutableDeployment) -> dict:
    """The file's bytes as OpenAI's inline `file_data` (what every translation reads), with its filename."""
    data = _inline_base64(managed_file, deployment)
    return {"type": "file", "file": {"file_data": f"data:{managed_file.mime_type};base64,{data}",
                                     "filename": managed_file.filename}}
