"""What an event's ``data`` may hold: the one place that decides it.

``data`` travels as JSON through Temporal and reaches receivers written in any language, inside
an envelope signed byte for byte. Every way in (the API, the Python client and the workflow
inputs other services send) checks it here, so whatever is accepted can be delivered unchanged
and whatever cannot is refused before a workflow starts, naming the offending path.

The limits and where they come from:

- **A JSON object** whose keys are strings and whose values are objects, arrays, strings,
  numbers, ``true``, ``false`` or ``null``; other Python values (datetimes, Decimals, tuples,
  sets) would reach receivers as something else, or not at all.
- **At most** :data:`MAX_DEPTH` **levels of nesting**, ``data`` itself being level 1. The JSON
  parser our workers decode workflow inputs with (pydantic's) gives up at about 200 levels, and
  some receivers' sooner (Ruby's ``JSON.parse`` at 100, Rust's ``serde_json`` at 128); 32
  leaves room for any real event.
- **Integers within ±(2**53 - 1)** (:data:`MAX_SAFE_INTEGER`). JavaScript numbers and Go's
  ``encoding/json`` decoding into ``any`` are IEEE doubles: larger integers arrive rounded to
  another number. Send them as strings.
- **Finite floats.** NaN and the infinities are not JSON (RFC 8259), though Python's ``json``
  accepts and writes them.
- **Strings and keys that UTF-8 can carry**: no lone surrogates (``"\\ud800"``), which have no
  UTF-8 form, so the envelope could not be serialised. Every other code point, NUL included,
  is fine.
- **Size:** ``data`` serialised as in the envelope (compact, UTF-8) takes at most the event
  limit minus :data:`ENVELOPE_RESERVE` bytes, so the whole envelope stays within the limit. The
  limit is :data:`MAX_EVENT_BYTES` (256 KiB) for workflow inputs; the API may be configured
  lower (``INFRAUDIT_MAX_EVENT_BYTES``), never higher. Temporal refuses payloads over 2 MB and
  warns over 512 KB; the largest copy of the envelope is the send activity's input, where JSON
  string escaping can at most double it: 256 KiB keeps every payload far under the limit and at
  most at the warning.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

from infraudit import signing

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1
MAX_EVENT_BYTES = 256 * 1024
#: Bytes of the envelope that are not ``data``: its keys, the event type, the timestamp, the
#: webhook and delivery ids (about 200 bytes at their longest; tests/test_event_input.py checks).
ENVELOPE_RESERVE = 1024

_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def max_data_bytes(max_event_bytes: int = MAX_EVENT_BYTES) -> int:
    """The most bytes ``data`` may take in an envelope of at most ``max_event_bytes``."""
    return max_event_bytes - ENVELOPE_RESERVE


def check(data: dict[str, Any], *, max_event_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Return ``data`` when it is deliverable unchanged, else raise ValueError naming the path.

    The walk is iterative, so even a structure nested far too deep (or containing itself) gets
    a ValueError, never a RecursionError.
    """
    problem = _structure_problem(data)
    if problem:
        raise ValueError(problem)
    return check_size(data, max_event_bytes=max_event_bytes)


def check_size(data: dict[str, Any], *, max_event_bytes: int) -> dict[str, Any]:
    """Return ``data`` when its envelope fits ``max_event_bytes``, else raise ValueError.

    For data that passed :func:`check`: the API applies its own configured limit with this.
    """
    size = len(signing.envelope_body(data))  # the same serialisation the envelope gets
    limit = max_data_bytes(max_event_bytes)
    if size > limit:
        raise ValueError(
            f"data: {size} bytes as JSON, over the {limit} byte limit "
            f"({max_event_bytes} per envelope)"
        )
    return data


#: The ``data`` field of every model events enter by (API body, workflow inputs), checked
#: against the contract's limit.
EventData = Annotated[dict[str, Any], AfterValidator(check)]


#: Name of the OpenAPI component describing one value inside ``data``.
VALUE_SCHEMA_NAME = "EventDataValue"


def value_schema(ref: str) -> dict[str, Any]:
    """The rules above as a JSON Schema (OpenAPI 3.1) of one value inside ``data``.

    ``ref`` is where this schema itself is published (it is recursive: arrays and objects hold
    more values). Depth, size and lone surrogates are beyond what the schema says; the numbers'
    bounds are in it, so clients and schema-driven tests generate only values we accept.
    """
    bounds = {"minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER}
    return {
        "description": "A JSON value; integers and numbers within ±(2^53 - 1).",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "string"},
            {"type": "integer", **bounds},
            {"type": "number", **bounds},
            {"type": "array", "items": {"$ref": ref}},
            {"type": "object", "additionalProperties": {"$ref": ref}},
        ],
    }


def _structure_problem(data: dict[str, Any]) -> str | None:
    """The first value (in document order) JSON cannot carry faithfully, described; or None."""
    stack: list[tuple[object, str, int]] = [(data, "data", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                return f"{path}: nested deeper than {MAX_DEPTH} levels"
            children: list[tuple[object, str, int]] = []
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{path}: key {key!r} is not a string"
                if _SURROGATE.search(key):
                    return f"{path}: key {key!r} holds a lone surrogate, which UTF-8 cannot carry"
                children.append((item, _child(path, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                return f"{path}: nested deeper than {MAX_DEPTH} levels"
            items = [(item, f"{path}[{n}]", depth + 1) for n, item in enumerate(value)]
            stack.extend(reversed(items))
        elif isinstance(value, str):
            if _SURROGATE.search(value):
                return f"{path}: holds a lone surrogate, which UTF-8 cannot carry"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                return (
                    f"{path}: integer beyond ±{MAX_SAFE_INTEGER} (2^53 - 1), which JavaScript "
                    f"and Go receivers would read as another number; send it as a string"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{path}: {value} is not a JSON number (JSON has no NaN or Infinity)"
        else:
            return f"{path}: a {type(value).__name__} is not a JSON value"
    return None


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _NAME.match(key) else f"{path}[{key!r}]"
