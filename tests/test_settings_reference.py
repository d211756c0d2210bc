"""docs/operations.md's configuration reference is what the settings model says (scripts/
settings_reference.py writes it), and it never prints a secret's default."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from scripts import settings_reference

from infraudit.config import Settings


def test_the_operations_guide_has_the_current_settings_reference() -> None:
    guide = settings_reference.GUIDE.read_text()
    assert settings_reference.update(guide) == guide, (
        "docs/operations.md's settings reference is not what src/config.py says: run "
        f"`{settings_reference.COMMAND}` and commit the result"
    )


def test_every_setting_has_a_row_with_its_variable_and_description() -> None:
    table = settings_reference.render()
    for name, field in Settings.model_fields.items():
        row = next(line for line in table.splitlines() if f"`INFRAUDIT_{name.upper()}`" in line)
        assert " ".join((field.description or "").split())[:40] in row


class _Example(BaseSettings):
    """A model with the shapes the reference must render, secrets with real defaults among them."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    seal: SecretStr = Field(SecretStr("sealed-default-value"), description="A typed secret.")
    deploy_token: str = Field("plain-token-value", description="A secret by its name.")
    mode: Literal["a", "b"] = Field("a", description="A choice | with a pipe.")
    limit: float = Field(2.0, gt=0, le=30, description="Seconds, <bounded>.")
    note: str | None = Field(None, description="Optional text.")


def test_secrets_render_unset_whatever_their_default() -> None:
    table = settings_reference.render(_Example)
    assert "sealed-default-value" not in table
    assert "plain-token-value" not in table
    assert "| `EXAMPLE_SEAL` | secret | unset |" in table
    assert "| `EXAMPLE_DEPLOY_TOKEN` | text | unset |" in table


def test_types_bounds_and_defaults_render_as_an_operator_writes_them() -> None:
    table = settings_reference.render(_Example)
    assert "| `EXAMPLE_MODE` | one of `a`, `b` | `a` | A choice \\| with a pipe. |" in table
    assert "| `EXAMPLE_LIMIT` | number (> 0, ≤ 30) | `2` | Seconds, \\<bounded>. |" in table
    assert "| `EXAMPLE_NOTE` | text, optional | unset | Optional text. |" in table


def test_a_setting_without_description_stops_the_reference() -> None:
    class Undocumented(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="EXAMPLE_")
        quiet: int = 1

    with pytest.raises(settings_reference.ReferenceProblem, match="quiet"):
        settings_reference.render(Undocumented)


def test_only_the_text_between_the_markers_is_rewritten() -> None:
    guide = (
        f"# Before\n\n{settings_reference.BEGIN}\nold table\n{settings_reference.END}\n\nAfter\n"
    )
    updated = settings_reference.update(guide, _Example)
    assert updated.startswith(f"# Before\n\n{settings_reference.BEGIN}\n")
    assert updated.endswith(f"{settings_reference.END}\n\nAfter\n")
    assert "old table" not in updated and "`EXAMPLE_SEAL`" in updated
    with pytest.raises(settings_reference.ReferenceProblem, match="settings:begin"):
        settings_reference.update("# no markers\n", _Example)
