"""Who is calling: Subsonic token, password and OpenSubsonic API key authentication.

Three mechanisms, exactly one per call:

- ``u`` + ``t`` + ``s``: ``t = md5(subsonic password + s)`` (Subsonic 1.13+);
- ``u`` + ``p``: the Subsonic password, plain or ``enc:`` + hex of its UTF-8 bytes;
- ``apiKey`` (OpenSubsonic ``apiKeyAuthentication``): alone, without ``u``.

The password checked is the user's *Subsonic* password (``phonotheca user token``),
never their web password (see :mod:`phonotheca.serve.state` for why). Mixing mechanisms
is error 43, a bad API key 44, a wrong user or password 40; a missing parameter 10.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac

from phonotheca.serve.state import StateStore, User
from phonotheca.serve.subsonic.call import Call
from phonotheca.serve.subsonic.envelope import (
    CONFLICTING_AUTH,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    WRONG_CREDENTIALS,
    SubsonicError,
)

_WRONG = "wrong username or password"


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
    """The user the call's credentials name, or a :class:`SubsonicError` saying why not."""
    state: StateStore = call.state
    api_key = call.get("apiKey")
    username, password, token, salt = (call.get(k) for k in ("u", "p", "t", "s"))
    if api_key is not None:
        if any(v is not None for v in (username, password, token, salt)):
            raise SubsonicError(
                CONFLICTING_AUTH,
                "multiple conflicting authentication mechanisms: apiKey must come alone,"
                " without u, p, t or s",
            )
        user = state.user_by_api_key(api_key)
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
    found = state.subsonic_password(username)
    if found is None:
        raise SubsonicError(WRONG_CREDENTIALS, _WRONG)
    user, secret = found
    if secret is None:
        raise SubsonicError(
            WRONG_CREDENTIALS,
            f"user {username!r} has no Subsonic password yet: run"
            f" 'phonotheca user token {username}' and use the password it prints",
        )
    if token is not None:
        assert salt is not None
        expected = hashlib.md5((secret + salt).encode("utf-8")).hexdigest()
        ok = hmac.compare_digest(expected, token.strip().lower())
    else:
        assert password is not None
        ok = hmac.compare_digest(secret.encode("utf-8"), _decode_password(password).encode("utf-8"))
    if not ok:
        raise SubsonicError(WRONG_CREDENTIALS, _WRONG)
    return user
