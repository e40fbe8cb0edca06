"""The publisher's key pair in ``ARCHIVE/keys/``, and signing files with it.

``keys/publisher.key`` is the secret key (minisign's format, mode 0600, scrypt-encrypted
when made with a passphrase): it never leaves the builder's machine (``publish`` and
``serve-files`` never read or serve ``keys/``, and the metadata release holds only the
catalog). ``keys/publisher.pub`` is the public key mirror operators pin. Signatures are
written beside the signed file as ``<file>.minisig`` (docs/FORMAT.md §11.5).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phonotheca.durable import write_atomically
from phonotheca.torrents import minisign
from phonotheca.torrents.minisign import KdfCost, PublicKey, SecretKey, SignatureError

KEYS_DIR = "keys"
SECRET_FILE = "publisher.key"
PUBLIC_FILE = "publisher.pub"


class PublisherKeyError(SignatureError):
    """The archive's key is missing, already there, or cannot be unlocked."""


@dataclass(frozen=True)
class ArchiveKeys:
    """Where an archive keeps its key pair."""

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def secret(self) -> Path:
        return self.directory / SECRET_FILE

    @property
    def public(self) -> Path:
        return self.directory / PUBLIC_FILE

    def exists(self) -> bool:
        return self.secret.exists()


def generate_keys(
    keys: ArchiveKeys, passphrase: bytes | None, *, cost: KdfCost = minisign.SENSITIVE
) -> PublicKey:
    """Make a key pair; refuses to replace an existing secret key (it would orphan every
    mirror that pinned the old public key)."""
    if keys.secret.exists():
        raise PublisherKeyError(
            f"{keys.secret}: the archive already has a publisher key; mirrors have pinned it."
            " Move it away first if you really mean to replace it"
        )
    secret = minisign.generate()
    keys.directory.mkdir(parents=True, exist_ok=True)
    keys.directory.chmod(0o700)
    text = secret.to_file(passphrase, cost).encode("ascii")
    _write_private(keys.secret, text)
    write_atomically(keys.public, secret.public.to_file().encode("ascii"))
    return secret.public


def _write_private(path: Path, data: bytes) -> None:
    """Like :func:`write_atomically`, but the file is created with mode 0600."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def public_key(keys: ArchiveKeys) -> PublicKey:
    """The archive's public key; a clear error when the archive has none."""
    try:
        text = keys.public.read_text(encoding="ascii")
    except FileNotFoundError:
        raise PublisherKeyError(
            f"{keys.public}: the archive has no publisher key; make one with"
            " 'phonotheca key generate'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PublisherKeyError(f"{keys.public}: cannot read the public key: {exc}") from None
    return minisign.parse_public_key(text, str(keys.public))


def secret_is_encrypted(keys: ArchiveKeys) -> bool:
    return minisign.secret_key_is_encrypted(_secret_text(keys), str(keys.secret))


def _secret_text(keys: ArchiveKeys) -> str:
    try:
        return keys.secret.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublisherKeyError(f"{keys.secret}: cannot read the secret key: {exc}") from None


def load_secret(keys: ArchiveKeys, passphrase: Callable[[], bytes]) -> SecretKey:
    """The secret key; ``passphrase`` is called only when the key is encrypted."""
    text = _secret_text(keys)
    needed = minisign.secret_key_is_encrypted(text, str(keys.secret))
    secret = minisign.load_secret_key(text, passphrase() if needed else None, str(keys.secret))
    if keys.public.exists() and public_key(keys) != secret.public:
        raise PublisherKeyError(
            f"{keys.public} does not belong to {keys.secret}: restore the right pair"
        )
    return secret


def signature_path(path: Path) -> Path:
    return path.with_name(path.name + minisign.SIGNATURE_SUFFIX)


def sign_file(path: Path, secret: SecretKey, *, now: dt.datetime | None = None) -> Path:
    """Sign the file at ``path`` (any file of a release) into ``<path>.minisig``, prehashed,
    with minisign's trusted comment (``timestamp:<unix>\\tfile:<name>\\thashed``)."""
    when = int((now or dt.datetime.now(dt.UTC)).timestamp())
    comment = f"timestamp:{when}\tfile:{path.name}\thashed"
    out = signature_path(path)
    text = minisign.sign_digest(minisign.file_digest(path), secret, comment)
    write_atomically(out, text.encode("utf-8"))
    return out


def verify_file(path: Path, key: PublicKey) -> minisign.Signature:
    """Check ``<path>.minisig`` against ``key`` (prehashed or legacy signatures)."""
    sig = signature_path(path)
    try:
        data = path.read_bytes()
        text = sig.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SignatureError(f"{exc.filename}: missing: the file is not signed") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{path}: cannot read it or its signature: {exc}") from None
    return minisign.verify(data, text, key, str(path))
