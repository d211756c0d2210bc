"""The envelope and signature, as a receiver in any language checks them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from infraudit import signing


def test_envelope_has_the_guides_keys_in_order_and_a_z_timestamp() -> None:
    moment = datetime(2024, 1, 15, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    envelope = signing.build_envelope(
        event="drift.detected",
        timestamp=moment,
        webhook_id="wh_abc123",
        delivery_id="del_xyz789",
        data={"b": 1, "a": [1, 2]},
    )
    body = signing.envelope_body(envelope)
    assert body == (
        b'{"event":"drift.detected","timestamp":"2024-01-15T10:30:00Z","webhook_id":"wh_abc123",'
        b'"delivery_id":"del_xyz789","data":{"b":1,"a":[1,2]}}'
    )


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        signing.format_timestamp(datetime(2024, 1, 15))


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    body = json.dumps({"event": "alert.created"}).encode()
    expected = "sha256=" + hmac.new(b"whsec_s3cret", body, hashlib.sha256).hexdigest()
    assert signing.sign(body, "whsec_s3cret") == expected
    assert signing.verify_signature(body, "whsec_s3cret", expected)


@pytest.mark.parametrize(
    ("body", "secret", "header"),
    [
        (b'{"a":2}', "whsec_s3cret", None),
        (b'{"a":2}', "whsec_s3cret", ""),
        (b'{"a":2}', "whsec_other", "sha256=" + "0" * 64),
        (b'{"a":2} ', "whsec_s3cret", signing.sign(b'{"a":2}', "whsec_s3cret")),
        (b'{"a":2}', "whsec_wrong", signing.sign(b'{"a":2}', "whsec_s3cret")),
    ],
)
def test_verify_rejects_missing_tampered_or_foreign_signatures(
    body: bytes, secret: str, header: str | None
) -> None:
    assert not signing.verify_signature(body, secret, header)


def test_non_ascii_data_is_sent_as_utf8() -> None:
    envelope = signing.build_envelope(
        event="alert.created",
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        webhook_id="wh_1",
        delivery_id="del_1",
        data={"name": "Zürich ☁"},
    )
    assert "Zürich ☁".encode() in signing.envelope_body(envelope)
