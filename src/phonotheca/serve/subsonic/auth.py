"""Who is calling: Subsonic token, password and OpenSubsonic API key authentication.

Three mechanisms, exactly one per call:

- ``u`` + ``t`` + ``s``: ``t = md5(subsonic password + s)`` (Subsonic 1.13+);
- ``u`` + ``p``: the Subsonic password, plain or ``enc:`` + hex of its UTF-8 bytes;
- ``apiKey`` (OpenSubsonic ``apiKeyAuthentication``): alone, without ``u``.

The password checked is the user's *Subsonic* password (``phonotheca user token``),
never their web password (see :mod:`phonotheca.serve.state` for why). Mixing mechanisms
is error 43, a bad API key 44, a wrong user or password 40 (the same code, message and
work whether the user exists or not); a missing parameter 10. Failures are counted with
the web form's per address (:class:`~phonotheca.serve.security.SignInThrottle`).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

from phonotheca.serve.security import SignInThrottle, Throttled, client_address, retry_text
from phonotheca.serve.state import StateStore, User
from phonotheca.serve.subsonic.call import Call
from phonotheca.serve.subsonic.envelope import (
    CONFLICTING_AUTH,
    GENERIC,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    WRONG_CREDENTIALS,
    SubsonicError,
)

_WRONG = (
    "wrong username or password (the password is the Subsonic password that"
    " 'phonotheca user token NAME' printed, not the web password)"
)


def _decode_password(p: str) -> str:
    if not p.startswith("enc:"):
        return p
    try:
        return bytes.fromhex(p[4:]).decode("utf-8")
    except (ValueError, binascii.Error):
        raise SubsonicError(
            WRONG_CREDENTIALS, "password 'enc:' must be followed by hex digits"
        ) from None


def authenticate(call: Call) -> User:
    """The user the call's credentials name, or a :class:`SubsonicError` saying why not.

    Each check of credentials is an attempt of the sign-in throttle: past the limit of
    failures from the caller's address, the call fails (code 0, "too many failed sign-ins")
    without any check. Malformed calls (a missing or conflicting parameter) check nothing
    and are not counted.
    """
    state: StateStore = call.state
    throttle: SignInThrottle = call.ctx.throttle
    api_key = call.get("apiKey")
    username, password, token, salt = (call.get(k) for k in ("u", "p", "t", "s"))
    if api_key is not None:
        if any(v is not None for v in (username, password, token, salt)):
            raise SubsonicError(
                CONFLICTING_AUTH,
                "multiple conflicting authentication mechanisms: apiKey must come alone,"
                " without u, p, t or s",
            )
        user = _attempt(call, throttle, lambda: state.user_by_api_key(api_key))
        if user is None:
            raise SubsonicError(
                INVALID_API_KEY, "invalid API key: make one with 'phonotheca user token NAME'"
            )
        return user
    if username is None:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'u' is missing (or use apiKey)")
    if password is not None and token is not None:
        raise SubsonicError(
            CONFLICTING_AUTH, "multiple conflicting authentication mechanisms: both p and t given"
        )
    if password is None and token is None:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'p' or 't' and 's' is missing")
    if token is not None and salt is None:
        raise SubsonicError(
            MISSING_PARAMETER, "required parameter 's' (the token's salt) is missing"
        )
    plain = _decode_password(password) if password is not None else None

    def check() -> User | None:
        found = state.subsonic_password(username)
        user, secret = found if found is not None else (None, None)
        # An unknown user, or one without a Subsonic password yet, is checked against a
        # random secret: the same work and the same answer as a wrong password.
        if user is None or secret is None:
            user, secret = None, _unguessable()
        if token is not None:
            assert salt is not None
            expected = hashlib.md5((secret + salt).encode("utf-8")).hexdigest()
            # As bytes: compare_digest refuses str with non-ASCII characters.
            ok = hmac.compare_digest(expected.encode(), token.strip().lower().encode("utf-8"))
        else:
            assert plain is not None
            ok = hmac.compare_digest(secret.encode("utf-8"), plain.encode("utf-8"))
        return user if ok else None

    user = _attempt(call, throttle, check)
    if user is None:
        raise SubsonicError(WRONG_CREDENTIALS, _WRONG)
    return user


def _attempt(call: Call, throttle: SignInThrottle, check: Callable[[], User | None]) -> User | None:
    try:
        return throttle.attempt(client_address(call.request), check, expensive=False)
    except Throttled as exc:
        # HTTP 429 with Retry-After (as the web form and the JSON API answer), the
        # envelope's error 0 for apps that read only the body.
        raise SubsonicError(
            GENERIC,
            f"too many failed sign-ins from your address: {retry_text(exc.retry_after)}",
            http_status=429,
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


def _unguessable() -> str:
    return secrets.token_hex(16)
