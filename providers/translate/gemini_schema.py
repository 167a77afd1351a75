"""JSON Schema (as OpenAI clients write it) reduced to the OpenAPI subset Gemini's `Schema` accepts.

Gemini's function declarations and `responseSchema` reject keys outside their `Schema` message
(`additionalProperties`, `$schema`, `$ref`, `strict`, ...) with a 400, and an OBJECT whose
`properties` is empty. Pydantic and zod emit exactly those keys, so the schema is rewritten: local
`$ref`s are inlined from `$defs`/`definitions`, `["string", "null"]` becomes `nullable`, `oneOf`
becomes `anyOf`, `const` becomes a one-value `enum`, and every key Gemini does not know is dropped.
"""
from __future__ import annotations

from typing import Any

# The fields of Gemini's (and Vertex AI's) `Schema` object.
ALLOWED_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
# Gemini refuses any other `format` (e.g. `uri`, `email`) on the type it belongs to.
ALLOWED_FORMATS = frozenset({"date-time", "enum", "int32", "int64", "float", "double"})
# A recursive schema (a tree node that refers to itself) is cut off at this depth.
MAX_REF_DEPTH = 8


def clean_schema(schema: Any) -> dict[str, Any]:
    """A copy of `schema` that Gemini accepts; the input is never modified."""
    if not isinstance(schema, dict):
        return {}
    definitions = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _clean(schema, definitions, 0)


def _clean(schema: dict, definitions: dict, depth: int) -> dict[str, Any]:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        if depth >= MAX_REF_DEPTH:
            return {"type": "object"}
        target = definitions.get(reference.rsplit("/", 1)[-1])
        merged = {**(target if isinstance(target, dict) else {}),
                  **{key: value for key, value in schema.items() if key != "$ref"}}
        return _clean(merged, definitions, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        schema = {**all_of[0], **{key: value for key, value in schema.items() if key != "allOf"}}
        return _clean(schema, definitions, depth)
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const":
            cleaned.setdefault("enum", [value])
        elif key == "oneOf":
            cleaned["anyOf"] = value
        elif key in ALLOWED_KEYS:
            cleaned[key] = value
    _clean_type(cleaned)
    if "format" in cleaned and cleaned["format"] not in ALLOWED_FORMATS:
        del cleaned["format"]
    if isinstance(cleaned.get("anyOf"), list):
        variants = [_clean(item, definitions, depth) for item in cleaned["anyOf"] if isinstance(item, dict)]
        if any(variant.get("type") == "null" for variant in variants):
            cleaned["nullable"] = True
            variants = [variant for variant in variants if variant.get("type") != "null"]
        if len(variants) == 1 and "type" not in cleaned:
            del cleaned["anyOf"]
            cleaned = {**variants[0], **cleaned}
        else:
            cleaned["anyOf"] = variants
    if isinstance(cleaned.get("items"), dict):
        cleaned["items"] = _clean(cleaned["items"], definitions, depth)
    properties = cleaned.get("properties")
    if isinstance(properties, dict):
        if properties:
            cleaned["properties"] = {name: _clean(value, definitions, depth) if isinstance(value, dict) else {}
                                     for name, value in properties.items()}
            if isinstance(cleaned.get("required"), list):
                cleaned["required"] = [name for name in cleaned["required"] if name in properties]
        else:
            cleaned.pop("properties")
            cleaned.pop("required", None)
    return cleaned


def _clean_type(cleaned: dict) -> None:
    """`type: ["string", "null"]` as Gemini says it: one type plus `nullable`, or `anyOf` for several."""
    kind = cleaned.get("type")
    if not isinstance(kind, list):
        return
    types = [item for item in kind if item != "null"]
    if len(types) < len(kind):
        cleaned["nullable"] = True
    if len(types) == 1:
        cleaned["type"] = types[0]
    else:
        del cleaned["type"]
        if types:
            cleaned["anyOf"] = [{"type": item} for item in types]


def has_parameters(schema: dict) -> bool:
    """Whether a cleaned parameters schema says anything: Gemini refuses an OBJECT with no properties."""
    return bool(schema.get("properties")) or bool(schema.get("anyOf"))
