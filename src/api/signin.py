"""Signing in to the Settings page: a signed cookie in place of the API key, and CSRF checks.

The browser sends the org's API key once, in the body of the sign-in form (a POST, so never in a
URL or an access log line). The key is checked as every ``/v1`` request checks it
(:func:`infraudit.store.orgs.org_for_api_key`) and then forgotten: the browser gets a cookie
holding a *signed* value, ``base64url(JSON {org, iat, nonce}) "." base64url(HMAC-SHA256)``,
never the key, nothing in local storage. The cookie is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it), scoped to ``/settings``, ``Secure`` outside
dev mode, and a browser session cookie (closing the browser ends it); the server refuses it
``signin_hours`` after ``iat`` however active it was. Signing out deletes it. Why a signed value
and not a session table: any API process can check it, and no store schema changes; the price is
that a copied cookie stays valid until it expires, which is why it lives hours, not weeks.

CSRF: ``SameSite=Strict`` already keeps the cookie off requests other sites start. On top, every
state-changing request must carry the session's token (a hidden ``csrf_token`` form field, or the
``X-CSRF-Token`` header that ``app.js`` adds to htmx requests), an HMAC of the cookie's nonce, and
must not be marked cross-site by the browser's ``Sec-Fetch-Site`` header; the sign-in form, which
has no session yet, gets the ``Sec-Fetch-Site`` check (no other site can sign a visitor in).

A new webhook's signing secret is shown once (the guide's "copy it now"): the create answers
with a redirect to the webhook's page and a short-lived cookie holding the secret sealed
(AES-256-GCM, bound to the webhook and the sign-in), which that page opens once and deletes, so
a reload, the back button or a later visit finds nothing to show.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Request, status
from fastapi.responses import RedirectResponse, Response

from infraudit.api.deps import ResourcesDep
from infraudit.api.errors import ApiError
from infraudit.api.page import PAGE_PATH, PageAnswer, is_htmx
from infraudit.config import Settings

log = logging.getLogger(__name__)

#: The sign-in cookie, and the path it is sent to (the page, not the ``/v1`` API).
COOKIE = "infraudit_signin"
#: The cookie carrying a new webhook's sealed secret to its page, once.
SECRET_COOKIE = "infraudit_new_secret"
#: Seconds the sealed secret waits for its page: the redirect follows at once.
SECRET_COOKIE_SECONDS = 120
#: Where a browser that is not signed in is sent.
SIGN_IN_PATH = f"{PAGE_PATH}/sign-in"
#: The form field and the header that carry the CSRF token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing and so need no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``Sec-Fetch-Site`` values of requests a page of ours may start (absent: not a browser that
#: sends it, left to the token).
SAME_ORIGIN = frozenset({"same-origin", "none"})

# One key, three uses kept apart by a label in each HMAC.
_COOKIE_LABEL = b"infraudit sign-in cookie\x00"
_CSRF_LABEL = b"infraudit csrf token\x00"
_SEAL_LABEL = b"infraudit one-time secret\x00"
_NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SignIn:
    """A signed-in browser: its org, and the token its state-changing requests must carry."""

    org_id: str
    nonce: str
    csrf_token: str


class SignInKeys:
    """Signs and checks sign-in cookies, derives CSRF tokens, seals one-time secrets.

    ``key``: the ``signin_key`` setting's bytes; ``max_age``: seconds a sign-in lasts. Methods
    take ``now`` (seconds since the epoch) so a test can age a cookie.
    """

    def __init__(self, key: bytes, max_age: float) -> None:
        self._key = key
        self.max_age = max_age
        self._sealer = AESGCM(hmac.new(key, _SEAL_LABEL, hashlib.sha256).digest())

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInKeys:
        """The keys of ``settings``; without ``signin_key``, a random one for this process."""
        if settings.signin_key is None:
            log.warning(
                "INFRAUDIT_SIGNIN_KEY is not set: Settings page sign-ins last until this API "
                "process stops and are not shared with other API processes"
            )
            return cls(secrets.token_bytes(32), settings.signin_hours * 3600)
        key = settings.signin_key.get_secret_value().strip().encode()
        return cls(key, settings.signin_hours * 3600)

    def _mac(self, label: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, label + data, hashlib.sha256).digest()

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of the sign-in with ``nonce``: derived, so nothing is stored."""
        return _b64(self._mac(_CSRF_LABEL, nonce.encode()))

    def sign(self, org_id: str, *, now: float | None = None) -> str:
        """A new cookie value for ``org_id``, with a fresh nonce."""
        issued = int(time.time() if now is None else now)
        fields = {"org": org_id, "iat": issued, "nonce": _b64(secrets.token_bytes(16))}
        payload = json.dumps(fields, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(_COOKIE_LABEL, payload))}"

    def read(self, value: str | None, *, now: float | None = None) -> SignIn | None:
        """The sign-in a cookie value stands for, or None when it is missing, forged, altered,
        malformed or older than ``max_age`` seconds."""
        if not value or value.count(".") != 1:
            return None
        encoded, mac = value.split(".")
        try:
            payload = _unb64(encoded)
            valid = hmac.compare_digest(_unb64(mac), self._mac(_COOKIE_LABEL, payload))
            fields = json.loads(payload) if valid else None
        except (binascii.Error, ValueError):
            return None
        if not isinstance(fields, dict):
            return None
        org, issued, nonce = fields.get("org"), fields.get("iat"), fields.get("nonce")
        if not (isinstance(org, str) and isinstance(issued, int) and isinstance(nonce, str)):
            return None
        age = (time.time() if now is None else now) - issued
        if not 0 <= age < self.max_age:
            return None
        return SignIn(org_id=org, nonce=nonce, csrf_token=self.csrf_token(nonce))

    def _secret_context(self, webhook_id: str, signin: SignIn) -> bytes:
        return f"{webhook_id}\x00{signin.nonce}".encode()

    def seal_secret(self, secret: str, *, webhook_id: str, signin: SignIn) -> str:
        """``secret`` sealed for the page of ``webhook_id`` in this sign-in only."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._sealer.encrypt(
            nonce, secret.encode(), self._secret_context(webhook_id, signin)
        )
        return _b64(nonce + sealed)

    def open_secret(self, value: str | None, *, webhook_id: str, signin: SignIn) -> str | None:
        """The secret a :meth:`seal_secret` value holds, or None when there is none for this
        webhook in this sign-in."""
        if not value:
            return None
        try:
            raw = _unb64(value)
            return self._sealer.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._secret_context(webhook_id, signin)
            ).decode()
        except (binascii.Error, ValueError, InvalidTag):
            return None


def signin_keys(res: ResourcesDep) -> SignInKeys:
    """The API process's sign-in keys."""
    return res.signin_keys


SignInKeysDep = Annotated[SignInKeys, Depends(signin_keys)]


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Whether cookies get ``Secure``: always over https, and outside dev mode even when the
    request reached us as http (a TLS proxy in front); dev mode over plain http may not."""
    return request.url.scheme == "https" or not settings.dev


def check_same_origin(request: Request) -> None:
    """403 when the browser marks the request as started by another site (``Sec-Fetch-Site``)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in SAME_ORIGIN:
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "this form was sent from another site; nothing was changed. Open the page here and "
            "try again.",
        )


async def signed_in(request: Request, keys: SignInKeysDep) -> SignIn:
    """The browser's sign-in; without one, a redirect to the sign-in form (for htmx, a 401 that
    tells it to go there). A state-changing request must also pass the CSRF checks (403)."""
    signin = keys.read(request.cookies.get(COOKIE))
    if signin is None:
        if is_htmx(request):
            answer: Response = Response(
                status_code=status.HTTP_401_UNAUTHORIZED, headers={"HX-Redirect": SIGN_IN_PATH}
            )
        else:
            answer = RedirectResponse(SIGN_IN_PATH, status.HTTP_303_SEE_OTHER)
        raise PageAnswer(answer)
    if request.method not in SAFE_METHODS:
        check_same_origin(request)
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            field = (await request.form()).get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        if sent is None or not hmac.compare_digest(sent, signin.csrf_token):
            raise ApiError(
                status.HTTP_403_FORBIDDEN,
                "this form has expired (or did not come from this page); nothing was changed. "
                "Reload the page and try again.",
            )
    return signin


SignInDep = Annotated[SignIn, Depends(signed_in)]
