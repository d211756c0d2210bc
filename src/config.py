"""Settings, read from ``INFRAUDIT_*`` environment variables in this one module.

Every process (worker, API, CLI, `infraudit up`) builds a :class:`Settings`; nothing else in the
package reads the environment, so what a variable means is written down exactly once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infraudit import contract, event_data

#: Shortest ``INFRAUDIT_SIGNIN_KEY`` accepted (characters).
MIN_SIGNIN_KEY_LENGTH = 32


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
    temporal_address: str = Field(
        "localhost:7233", description="host:port of the Temporal frontend (gRPC)."
    )
    temporal_namespace: str = Field(
        "default",
        description=(
            "Temporal namespace of the deliveries; the worker registers it (with "
            "retention_days) and the search attributes at start (see infraudit.temporal.prepare)."
        ),
    )
    task_queue: str = Field(
        "infraudit-webhooks",
        description=(
            "Task queue of the workflows and activities: every worker, the API and any other "
            "starter must use the same."
        ),
    )
    # The retry settings obey the bounds of the workflow contract's DeliveryPolicy, which is
    # built from them: a worker refuses to start rather than start deliveries that cannot run.
    http_timeout: float = Field(
        contract.DEFAULT_TIMEOUT_SECONDS,
        ge=contract.MIN_TIMEOUT_SECONDS,
        le=contract.MAX_TIMEOUT_SECONDS,
        description="Seconds one POST attempt may take.",
    )
    delivery_window: float = Field(
        contract.DEFAULT_WINDOW_SECONDS,
        ge=contract.MIN_WINDOW_SECONDS,
        le=contract.MAX_WINDOW_SECONDS,
        description="Seconds from first attempt to giving up (schedule-to-close).",
    )
    retry_initial_interval: float = Field(
        contract.DEFAULT_INTERVAL_SECONDS,
        ge=contract.MIN_INTERVAL_SECONDS,
        le=contract.MAX_WINDOW_SECONDS,
        description="Seconds between the first and the second attempt.",
    )
    retry_backoff_coefficient: float = Field(
        contract.DEFAULT_BACKOFF_COEFFICIENT,
        ge=1.0,
        le=contract.MAX_BACKOFF_COEFFICIENT,
        description="Each later gap is the previous one times this.",
    )
    retention_days: int = Field(
        30,
        ge=1,
        description=(
            "Days Temporal keeps closed deliveries: the delivery log's reach, and how long a "
            "repeated event id is recognised. The worker sets the namespace's retention to it."
        ),
    )
    response_body_limit: int = Field(
        16 * 1024, ge=0, description="Bytes of a receiver's response body that are recorded."
    )
    max_event_bytes: int = Field(
        event_data.MAX_EVENT_BYTES,
        ge=4 * event_data.ENVELOPE_RESERVE,
        le=event_data.MAX_EVENT_BYTES,
        description=(
            "Largest POST /v1/events body and largest envelope the API accepts (JSON bytes); at "
            "most the workflow contract's 256 KiB (see infraudit.event_data)."
        ),
    )
    dev: bool = Field(
        False, description="Dev mode: http:// endpoints allowed, private targets too (as below)."
    )
    allow_private_targets: bool = Field(
        False,
        description=(
            "Let endpoints be, or resolve to, loopback, private, link-local or reserved "
            "addresses without dev mode (the SSRF policy of infraudit.egress lifted): only for a "
            "deployment whose customers may reach its own network (docs/operations.md)."
        ),
    )
    api_host: str = Field("127.0.0.1", description="Address `infraudit api` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `infraudit api` listens on.")
    api_url: str = Field(
        "http://127.0.0.1:8000", description="Where the `infraudit` command line finds the API."
    )
    api_key: str | None = Field(
        None, description="The org API key the `infraudit` command line sends to the API."
    )
    api_metrics_host: str = Field(
        "127.0.0.1",
        description="Address the API's /metrics listener binds (0.0.0.0 in a container).",
    )
    api_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Port of the API's /metrics, a listener apart from the public API port; unset: the "
            "API serves no metrics and collects none (docs/operations.md, Metrics)."
        ),
    )
    worker_http_host: str = Field(
        "127.0.0.1",
        description="Address the worker's /healthz, /readyz and /metrics bind (0.0.0.0 in a "
        "container).",
    )
    worker_http_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Port of the worker's /healthz, /readyz and /metrics; unset: the worker serves no "
            "HTTP and collects no metrics (see infraudit.worker_http)."
        ),
    )
    temporal_ui_port: int = Field(
        8233,
        ge=1,
        le=65535,
        description="Port of the dev server's Web UI that `infraudit up` starts.",
    )
    temporal_ui_url: str = Field(
        "",
        description=(
            "Base URL of the Temporal Web UI, for the Settings page's links to a delivery's "
            "workflow; empty means the local dev server's, http://127.0.0.1:<temporal_ui_port>."
        ),
    )
    temporal_rpc_timeout: float = Field(
        2.0,
        gt=0,
        le=30,
        description=(
            "Seconds the API waits for Temporal (to connect, or to answer any one call) before "
            "answering 503 (see infraudit.temporal.connect)."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "How the worker and the API write their log: `text` lines for people (what `make run` "
            "shows), or `json`, one object per line for a log collector (see infraudit.logs)."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The least severe log lines the worker and the API write."
    )
    # Caps and rate limits per org, enforced by the API process (each process counts alone);
    # why these defaults: infraudit.api.quotas.
    max_webhooks_per_org: int = Field(100, ge=1, description="Webhooks one org may register.")
    events_per_second: float = Field(
        10.0, gt=0, description="Sustained POST /v1/events rate per org (events per second)."
    )
    event_burst: int = Field(
        100, ge=1, description="Events an org may publish at once before the rate applies."
    )
    pings_per_minute: int = Field(5, ge=1, description="Test pings per webhook per minute.")
    webhook_writes_per_minute: int = Field(
        60, ge=1, description="Webhook creates, updates and deletes per org per minute."
    )
    secret_keys: SecretStr | None = Field(
        None,
        description=(
            "Keys that seal signing secrets at rest: comma-separated, newest first, each 32 "
            "bytes in base64 (format and use: infraudit.store.secret_box). The newest seals, "
            "all open. Required by the API, the worker and `secrets rotate`; `make run` keeps "
            "its own in .infraudit/secret.key."
        ),
    )

    signin_key: SecretStr | None = Field(
        None,
        description=(
            "Key that signs the Settings page's sign-in cookies (and seals the one-time view of "
            "a new signing secret): at least 32 characters of random text, the same in every API "
            "process. Unset, each API process makes its own at start, so sign-ins end when it "
            "restarts; `make run` keeps one in .infraudit/signin.key (see infraudit.api.signin)."
        ),
    )
    signin_hours: float = Field(
        8.0,
        gt=0,
        le=24 * 30,
        description="Hours a Settings page sign-in lasts, however active; then sign in again.",
    )
    otel_enabled: bool = Field(
        False,
        description=(
            "Export OpenTelemetry traces (API and worker) over OTLP/HTTP; off, none are made "
            "(see infraudit.tracing and docs/operations.md, Tracing)."
        ),
    )
    otel_endpoint: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description=(
            "Base URL of the OTLP/HTTP collector, e.g. http://otel-collector:4318 (/v1/traces "
            "is appended); empty: the SDK's OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
            "OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318."
        ),
    )

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        """``JSON`` and ``INFO`` mean what ``json`` and ``info`` do, as they do to uvicorn."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("signin_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """A short key could be guessed, and with it any org's sign-in forged."""
        if value is not None and len(value.get_secret_value().strip()) < MIN_SIGNIN_KEY_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SIGNIN_KEY_LENGTH} characters of random text "
                "(`infraudit secrets new-key` prints one)"
            )
        return value

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        """The API, its metrics and the worker's HTTP run side by side under `make run` (one
        environment for all): the same port twice would make one of them fail to bind."""
        ports = {
            "INFRAUDIT_API_PORT": self.api_port,
            "INFRAUDIT_API_METRICS_PORT": self.api_metrics_port,
            "INFRAUDIT_WORKER_HTTP_PORT": self.worker_http_port,
        }
        taken: dict[int, str] = {}
        for name, port in ports.items():
            if port is not None and port in taken:
                raise ValueError(f"{name} and {taken[port]} are both {port}; give each its own")
            if port is not None:
                taken[port] = name
        return self

    @model_validator(mode="after")
    def _local_temporal_ui(self) -> Settings:
        """Without ``temporal_ui_url``, links go to the dev server's UI that ``up`` starts."""
        self.temporal_ui_url = (
            self.temporal_ui_url.strip().rstrip("/") or f"http://127.0.0.1:{self.temporal_ui_port}"
        )
        return self

    @model_validator(mode="after")
    def _attempts_fit_the_window(self) -> Settings:
        """Refuse a schedule whose third attempt could not start inside the delivery window
        (the contract's rule, :func:`infraudit.contract.schedule_problem`)."""
        problem = contract.schedule_problem(
            timeout_seconds=self.http_timeout,
            window_seconds=self.delivery_window,
            initial_interval_seconds=self.retry_initial_interval,
            backoff_coefficient=self.retry_backoff_coefficient,
        )
        if problem:
            raise ValueError(problem)
        return self

    def delivery_policy(self) -> contract.DeliveryPolicy:
        """The retry policy these settings describe; starters put it in every delivery's input,
        so the workflow never reads settings (a delivery without one gets the contract's)."""
        return contract.DeliveryPolicy(
            timeout_seconds=self.http_timeout,
            window_seconds=self.delivery_window,
            initial_interval_seconds=self.retry_initial_interval,
            backoff_coefficient=self.retry_backoff_coefficient,
        )

    @property
    def private_targets_allowed(self) -> bool:
        """Whether endpoints may reach non-public addresses: dev mode, or the explicit
        ``INFRAUDIT_ALLOW_PRIVATE_TARGETS``. The API's URL check and the worker's connection
        guard both read this, so they apply one policy."""
        return self.dev or self.allow_private_targets


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
