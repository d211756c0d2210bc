"""Write docs/operations.md's configuration reference from the settings model.

    .venv/bin/python -m scripts.settings_reference

Every field of :class:`infraudit.config.Settings` becomes one row (its ``INFRAUDIT_*``
variable, type and bounds, default, description), written between the marker comments
:data:`BEGIN` and :data:`END` of the guide; the prose around them is left alone. The model is the
one source: a field without a ``description=`` stops the script, so a new setting cannot reach
the guide undocumented, and ``tests/test_settings_reference.py`` fails while the guide is not
what this script would write.

A repository tool, not a command of the package: it writes a file of this checkout, which an
installed engine does not have (hence ``scripts/``, beside ``scripts.screenshots``).

Secrets never show a default: a field typed ``SecretStr`` (or ``SecretBytes``), or whose name
says key, secret, password or token, renders as *unset* whatever its default is.
"""

from __future__ import annotations

import re
import sys
import types
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from infraudit.config import Settings

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
COMMAND = ".venv/bin/python -m scripts.settings_reference"
#: Words in a field's name that mark it secret even when it is typed as plain text.
_SECRET_NAME = re.compile(r"(^|_)(keys?|secrets?|password|token)($|_)")
_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}
_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


class ReferenceProblem(Exception):
    """The model or the guide cannot give a reference (a field without description, no markers)."""


def is_secret(name: str, field: FieldInfo) -> bool:
    """Whether the field holds a secret, whose default must never be printed."""
    secret_types = (SecretStr, SecretBytes)
    annotation = field.annotation
    typed_secret = annotation in secret_types or any(
        a in secret_types for a in get_args(annotation)
    )
    return typed_secret or bool(_SECRET_NAME.search(name))


def plain_value(value: Any) -> str:
    """A value as an operator would write it in the environment: ``10``, ``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Enum):
        value = value.value
    # Defaults computed under the working folder (the local state dir) read relative to it, so
    # the reference is the same from any checkout.
    return str(value).replace(f"{Path.cwd()}/", "./")


def render_type(annotation: Any) -> str:
    """``number``, ``text, optional``, ``secret``, ``one of `text`, `json```..."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        rendered = " or ".join(render_type(a) for a in inner)
        return f"{rendered}, optional" if len(inner) < len(args) else rendered
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if annotation in (SecretStr, SecretBytes):
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    return str(annotation).replace("typing.", "")


def render_bounds(field: FieldInfo) -> str:
    """The field's numeric bounds, e.g. `` ≥ 1, ≤ 300``; empty without any."""
    parts = [
        f"{sign} {plain_value(getattr(item, attr))}"
        for item in field.metadata
        for kind, attr, sign in _BOUNDS
        if isinstance(item, kind)
    ]
    return f" ({', '.join(parts)})" if parts else ""


def render_default(name: str, field: FieldInfo) -> str:
    """The default, ``unset`` for a secret or a missing value."""
    if is_secret(name, field):
        return "unset"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    text = plain_value(value)
    return f"`{text}`" if text else '`""` (empty)'


def _cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes escaped, ``<`` not read as an HTML tag."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def render(settings: type[BaseSettings] = Settings) -> str:
    """The reference table of ``settings``, one row per field, in the model's order.

    Raises :class:`ReferenceProblem` naming the fields without a description.
    """
    prefix = settings.model_config.get("env_prefix", "")
    fields = settings.model_fields
    undocumented = [name for name, field in fields.items() if not field.description]
    if undocumented:
        raise ReferenceProblem(
            f"settings without description=: {', '.join(undocumented)} "
            "(give each a Field(description=...) in src/config.py)"
        )
    rows = [
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in fields.items():
        variable = f"`{(prefix + name).upper()}`"
        kind = render_type(field.annotation) + render_bounds(field)
        default = render_default(name, field)
        rows.append(
            f"| {variable} | {_cell(kind)} | {_cell(default)} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def update(guide: str, settings: type[BaseSettings] = Settings) -> str:
    """``guide`` with the text between :data:`BEGIN` and :data:`END` replaced by the reference."""
    start, end = guide.find(BEGIN), guide.find(END)
    if start < 0 or end < start:
        raise ReferenceProblem(f"the guide has no {BEGIN} ... {END} block for the reference")
    note = f"<!-- generated from src/config.py by `{COMMAND}`: edit the model, not this table -->"
    block = f"{BEGIN}\n{note}\n\n{render(settings)}\n\n"
    return guide[:start] + block + guide[end:]


def main() -> int:
    """Rewrite the guide's reference; say whether it changed."""
    old = GUIDE.read_text()
    try:
        new = update(old)
    except ReferenceProblem as err:
        print(f"settings reference: {err}", file=sys.stderr)
        return 1
    if new == old:
        print(f"{GUIDE.name}: settings reference already current")
    else:
        GUIDE.write_text(new)
        print(f"{GUIDE.name}: settings reference rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
