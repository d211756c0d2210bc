"""Settings, read from ``INFRAUDIT_*`` environment variables in this one module.

Every process (worker, API, CLI, `infraudit up`) builds a :class:`Settings`; nothing else in the
package reads the environment, so what a variable means is written down exactly once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The guide promises three attempts; this is not a setting because changing it breaks a promise.
MAX_ATTEMPTS = 3


def default_state_dir() -> Path:
    """Where the embedded defaults keep their state: ``./.infraudit`` under the working folder."""
    return Path.cwd() / ".infraudit"


class Settings(BaseSettings):
    """The engine's configuration; defaults give the embedded local stack."""

    model_config = SettingsConfigDict(env_prefix="INFRAUDIT_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{default_state_dir() / 'infraudit.db'}",
        description="SQLAlchemy URL of the registrations store (sqlite:/// or postgresql://).",
    )
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "infraudit-webhooks"
    http_timeout: float = Field(10.0, gt=0, description="Seconds one POST attempt may take.")
    delivery_window: float = Field(
        1800.0, gt=0, description="Seconds from first attempt to giving up (schedule-to-close)."
    )
    retry_initial_interval: float = Field(
        300.0, gt=0, description="Seconds between the first and the second attempt."
    )
    retry_backoff_coefficient: float = Field(
        3.0, ge=1.0, description="Each later gap is the previous one times this."
    )
    retention_days: int = Field(30, ge=1, description="How long Temporal keeps closed deliveries.")
    response_body_limit: int = Field(
        16 * 1024, ge=0, description="Bytes of a receiver's response body that are recorded."
    )
    max_event_bytes: int = Field(
        256 * 1024, gt=0, description="Largest accepted event body (JSON bytes)."
    )
    dev: bool = Field(False, description="Dev mode: http:// and loopback endpoints allowed.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    temporal_ui_port: int = 8233

    @model_validator(mode="after")
    def _attempts_fit_the_window(self) -> Settings:
        """Refuse a schedule whose third attempt could not start inside the delivery window."""
        last_start = self.retry_initial_interval * (1 + self.retry_backoff_coefficient)
        if last_start + 2 * self.http_timeout >= self.delivery_window:
            raise ValueError(
                f"retry schedule does not fit: the third attempt would start after "
                f"{last_start:.0f}s plus two {self.http_timeout:.0f}s timeouts, beyond the "
                f"{self.delivery_window:.0f}s delivery window"
            )
        return self

    @property
    def temporal_ui_url(self) -> str:
        """The local dev server's Web UI."""
        return f"http://127.0.0.1:{self.temporal_ui_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
