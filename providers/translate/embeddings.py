"""Embedding vectors as OpenAI's `encoding_format=base64`: little-endian float32, base64-encoded.

The OpenAI SDK asks for base64 by default and decodes it itself, so every provider must be able to
answer that way, including those whose API only returns floats.
"""
from __future__ import annotations

import base64
import struct
from collections.abc import Sequence


def vector_to_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def base64_to_vector(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def encode_embeddings_base64(response: dict) -> dict:
    """Rewrite a float embeddings response in place so each `embedding` is a base64 string."""
    for item in response.get("data") or []:
        embedding = item.get("embedding")
        if isinstance(embedding, list):
            item["embedding"] = vector_to_base64(embedding)
    return response
