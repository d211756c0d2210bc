"""The secret box on its own: sealed format, binding to the webhook, key rotation, bad keys."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import pytest

from infraudit import ids
from infraudit.config import Settings
from infraudit.store import migrate, orgs, webhooks
from infraudit.store.db import Database
from infraudit.store.secret_box import (
    KEYS_VARIABLE,
    Keyring,
    SecretKeyError,
    UnreadableSecret,
    decode_keys,
    key_id,
    new_key,
)

SEALED = re.compile(r"^v1:([0-9a-f]{8}):[A-Za-z0-9_=-]+$")


def keyring(*keys: str) -> Keyring:
    return Keyring(decode_keys(",".join(keys)))


def test_a_sealed_secret_opens_only_for_its_webhook_and_shows_nothing_of_itself() -> None:
    ring = keyring(new_key())
    secret = ids.new_secret()

    sealed = ring.seal(secret, webhook_id="wh_a")
    again = ring.seal(secret, webhook_id="wh_a")

    match = SEALED.match(sealed)
    assert match and match.group(1) == ring.current_id
    assert secret not in sealed and secret[len("whsec_") :] not in sealed
    assert sealed != again  # a fresh nonce each time
    assert ring.open(sealed, webhook_id="wh_a") == secret
    assert ring.open(again, webhook_id="wh_a") == secret
    # A row's value copied onto another webhook does not open there.
    with pytest.raises(UnreadableSecret, match="wh_b does not open under key") as moved:
        ring.open(sealed, webhook_id="wh_b")
    assert sealed not in str(moved.value) and secret not in str(moved.value)


@pytest.mark.parametrize("position", [3, 20, -3])
def test_an_altered_byte_anywhere_in_the_ciphertext_is_refused(position: int) -> None:
    ring = keyring(new_key())
    sealed = ring.seal(ids.new_secret(), webhook_id="wh_a")
    prefix, payload = sealed[: len(ring.current_prefix)], sealed[len(ring.current_prefix) :]
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[position] ^= 0x01
    altered = prefix + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(UnreadableSecret, match="altered"):
        ring.open(altered, webhook_id="wh_a")


def test_unknown_keys_and_plain_values_are_refused_by_name_without_their_content() -> None:
    old, new = new_key(), new_key()
    secret = ids.new_secret()
    under_old = keyring(old).seal(secret, webhook_id="wh_a")
    old_id = key_id(base64.urlsafe_b64decode(old))

    with pytest.raises(UnreadableSecret) as unknown:
        keyring(new).open(under_old, webhook_id="wh_a")
    message = str(unknown.value)
    assert f"sealed under key {old_id}" in message and KEYS_VARIABLE in message
    assert secret not in message and under_old not in message and old not in message

    with pytest.raises(UnreadableSecret, match="not stored in a sealed form") as plain:
        keyring(new).open(secret, webhook_id="wh_a")
    assert secret not in str(plain.value)


def test_rotation_the_newest_key_seals_and_every_listed_key_opens() -> None:
    old, new = new_key(), new_key()
    secret = ids.new_secret()
    before = keyring(old)
    during = keyring(new, old)
    after = keyring(new)

    under_old = before.seal(secret, webhook_id="wh_a")
    assert not under_old.startswith(during.current_prefix)
    assert during.open(under_old, webhook_id="wh_a") == secret

    resealed = during.seal(during.open(under_old, webhook_id="wh_a"), webhook_id="wh_a")
    assert resealed.startswith(during.current_prefix) == resealed.startswith(after.current_prefix)
    assert resealed.startswith(after.current_prefix)
    assert after.open(resealed, webhook_id="wh_a") == secret
    with pytest.raises(UnreadableSecret):
        after.open(under_old, webhook_id="wh_a")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        ("not-base64!", "key 1 is not 32 bytes"),
        (base64.urlsafe_b64encode(b"x" * 16).decode(), "key 1 is not 32 bytes"),
        ("{good}," + base64.urlsafe_b64encode(b"\xfb" * 33).decode(), "key 2 is not 32 bytes"),
        ("{good},{good}", "key 2 is listed twice"),
    ],
)
def test_malformed_keys_are_refused_naming_the_position_not_the_key(
    value: str, problem: str
) -> None:
    good = new_key()
    value = value.replace("{good}", good)
    with pytest.raises(SecretKeyError, match=problem) as refused:
        decode_keys(value)
    assert good not in str(refused.value)


def test_openssl_style_standard_base64_keys_are_accepted_too() -> None:
    raw = bytes(range(200, 232))  # encodes with "+" and "/" in standard base64
    standard = base64.standard_b64encode(raw).decode()
    assert "+" in standard or "/" in standard
    assert decode_keys(f"{standard}, {new_key()}")[0] == raw


def test_settings_never_print_the_keys_and_no_key_is_a_clear_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEYS_VARIABLE, raising=False)
    with pytest.raises(SecretKeyError, match=f"{KEYS_VARIABLE} is not set"):
        Keyring.from_settings(Settings())

    key = new_key()
    monkeypatch.setenv(KEYS_VARIABLE, f" {key} ")
    settings = Settings()
    ring = Keyring.from_settings(settings)
    for shown in (repr(settings), str(settings.model_dump()), repr(ring)):
        assert key not in shown
    assert ring.current_id == key_id(base64.urlsafe_b64decode(key))


async def test_a_store_opened_without_a_keyring_refuses_to_write_or_read_a_secret(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    org = f"org-{uuid.uuid4().hex[:8]}"
    keyed = Database(url, keyring(new_key()))
    bare = Database(url)
    try:
        async with keyed.session() as session, session.begin():
            await orgs.ensure_org(session, org)
            hook, _ = await webhooks.create_webhook(
                session, org_id=org, url="https://example.com/h", event_types=["drift.detected"]
            )
        async with bare.session() as session:
            with pytest.raises(SecretKeyError, match="without a keyring"):
                await webhooks.create_webhook(
                    session, org_id=org, url="https://example.com/h", event_types=["job.completed"]
                )
            with pytest.raises(SecretKeyError, match="without a keyring"):
                await webhooks.load_signing_target(session, hook.id)
        async with bare.session() as session:
            assert len(await webhooks.list_webhooks(session, org)) == 1
    finally:
        await keyed.dispose()
        await bare.dispose()
