"""The event catalog, identifiers and settings read from the environment."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from infraudit import events, ids
from infraudit.config import Settings


def test_catalog_is_the_guides_eight_types_plus_ping() -> None:
    assert set(events.EVENT_TYPES) == {
        "drift.detected",
        "drift.resolved",
        "alert.created",
        "vulnerability.found",
        "compliance.violation",
        "cost.anomaly",
        "job.completed",
        "remediation.completed",
        "webhook.ping",
    }
    assert all(description for description in events.EVENT_TYPES.values())


def test_unknown_types_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'drift'.*drift\.detected"):
        events.check_known("drift")


def test_delivery_ids_are_stable_and_distinct() -> None:
    assert ids.delivery_id("evt_1", "wh_1") == ids.delivery_id("evt_1", "wh_1")
    assert ids.delivery_id("evt_1", "wh_1") != ids.delivery_id("evt_1", "wh_2")
    assert ids.delivery_id("evt_1", "wh_1") != ids.delivery_id("evt_2", "wh_1")
    assert ids.delivery_id("evt_1", "wh_1").startswith("del_")
    assert ids.new_webhook_id().startswith("wh_")
    assert ids.new_secret().startswith("whsec_")
    assert ids.new_event_id().startswith("evt_")


def test_defaults_fit_three_attempts_in_thirty_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INFRAUDIT_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.http_timeout == 10
    assert settings.delivery_window == 1800
    assert settings.task_queue == "infraudit-webhooks"
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"
    assert settings.retention_days == 30
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("/.infraudit/infraudit.db")
    # The guide: 3 attempts with exponential backoff, all within 30 minutes, each up to 10 s.
    assert settings.retry_backoff_coefficient > 1
    third_attempt = settings.retry_initial_interval * (1 + settings.retry_backoff_coefficient)
    assert third_attempt + 3 * settings.http_timeout <= settings.delivery_window


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAUDIT_HTTP_TIMEOUT", "2.5")
    monkeypatch.setenv("INFRAUDIT_RETRY_INITIAL_INTERVAL", "1")
    monkeypatch.setenv("INFRAUDIT_RETRY_BACKOFF_COEFFICIENT", "2")
    monkeypatch.setenv("INFRAUDIT_TASK_QUEUE", "elsewhere")
    settings = Settings()
    assert (settings.http_timeout, settings.retry_initial_interval) == (2.5, 1)
    assert settings.retry_backoff_coefficient == 2
    assert settings.task_queue == "elsewhere"


def test_a_schedule_that_cannot_fit_the_window_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFRAUDIT_RETRY_INITIAL_INTERVAL", "900")
    with pytest.raises(ValidationError, match="retry schedule does not fit"):
        Settings()
