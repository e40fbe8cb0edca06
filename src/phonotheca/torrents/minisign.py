"""Ed25519 keys and signatures in minisign's file formats (docs/FORMAT.md §11.5).

Phonotheca signs ``torrents.json`` (and any other file a release carries) exactly as
``minisign -S`` does, so that Debian's ``minisign -V`` checks our signatures and we check
its: the same public key (``RW…``), secret key (scrypt-encrypted or not) and signature
files. Nothing here reads or writes the archive; :mod:`phonotheca.torrents.keys` does.

Formats, all base64 on the line after an ``untrusted comment:`` line:

- public key: ``"Ed"`` ‖ key id (8 bytes) ‖ Ed25519 public key (32);
- secret key: ``"Ed"`` ‖ KDF (``"Sc"`` scrypt, or two zero bytes: none) ‖ ``"B2"`` ‖ salt (32)
  ‖ opslimit (u64 LE) ‖ memlimit (u64 LE) ‖ [key id ‖ seed+public key (64) ‖ BLAKE2b-256
  checksum (32)], the bracket XORed with 104 bytes of scrypt(passphrase, salt);
- signature: ``"ED"`` (BLAKE2b-512 of the file signed: *prehashed*) or ``"Ed"`` (the file
  itself: *legacy*) ‖ key id ‖ signature (64), then ``trusted comment: …`` and the global
  signature (64) of signature ‖ trusted comment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_ALG = b"Ed"
PREHASHED = b"ED"
KDF_SCRYPT = b"Sc"
KDF_NONE = b"\0\0"
CHK_ALG = b"B2"
UNTRUSTED = "untrusted comment: "
TRUSTED = "trusted comment: "
SIGNATURE_SUFFIX = ".minisig"
_SK_SECRET = 8 + 64 + 32
"""Key id, secret key (seed ‖ public key, as libsodium keeps it) and checksum."""


class SignatureError(Exception):
    """A key or signature that is malformed, wrong or does not match: one line saying which."""


@dataclass(frozen=True)
class KdfCost:
    """libsodium's scrypt limits, stored in the secret key file (minisign reads them back)."""

    opslimit: int
    memlimit: int


SENSITIVE = KdfCost(opslimit=33_554_432, memlimit=1_073_741_824)
"""minisign's own default: scrypt with N = 2²⁰, r = 8 (1 GiB, a few seconds)."""
INTERACTIVE = KdfCost(opslimit=524_288, memlimit=16_777_216)
"""libsodium's interactive level (16 MiB): for tests, not for a publisher's key."""


def key_id_text(key_id: bytes) -> str:
    """The key id as minisign prints it: the 8 bytes as a little-endian number, hex."""
    return f"{int.from_bytes(key_id, 'little'):X}"


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    key: bytes

    @property
    def id_text(self) -> str:
        return key_id_text(self.key_id)

    def to_base64(self) -> str:
        """The ``RW…`` string that ``minisign -P`` takes."""
        return base64.b64encode(SIG_ALG + self.key_id + self.key).decode("ascii")

    def to_file(self) -> str:
        return f"{UNTRUSTED}minisign public key {self.id_text}\n{self.to_base64()}\n"


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes

    @property
    def public(self) -> PublicKey:
        raw = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return PublicKey(self.key_id, raw)

    def sign_raw(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def to_file(self, passphrase: bytes | None, cost: KdfCost = SENSITIVE) -> str:
        """The secret key file; encrypted with scrypt when ``passphrase`` is given."""
        sk = self.seed + self.public.key
        chk = hashlib.blake2b(SIG_ALG + self.key_id + sk, digest_size=32).digest()
        inner = self.key_id + sk + chk
        if passphrase is None:
            head = SIG_ALG + KDF_NONE + CHK_ALG + bytes(32 + 16)
        else:
            salt = secrets.token_bytes(32)
            head = SIG_ALG + KDF_SCRYPT + CHK_ALG + salt
            head += struct.pack("<QQ", cost.opslimit, cost.memlimit)
            inner = _xor(inner, _scrypt(passphrase, salt, cost))
        body = base64.b64encode(head + inner).decode("ascii")
        return f"{UNTRUSTED}minisign encrypted secret key\n{body}\n"


def generate() -> SecretKey:
    """A new key pair with a random key id."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SecretKey(secrets.token_bytes(8), seed)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def scrypt_params(cost: KdfCost) -> tuple[int, int, int]:
    """``(N, r, p)`` as libsodium's ``crypto_pwhash_scryptsalsa208sha256`` picks them."""
    ops = max(cost.opslimit, 32768)
    r = 8
    by_ops = ops < cost.memlimit // 32
    max_n = ops // (r * 4) if by_ops else cost.memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    p = 1 if by_ops else min((ops // 4) // (1 << n_log2), 0x3FFFFFFF) // r
    return 1 << n_log2, r, p


def _scrypt(passphrase: bytes, salt: bytes, cost: KdfCost) -> bytes:
    n, r, p = scrypt_params(cost)
    if p < 1 or n > 1 << 24:
        raise SignatureError(f"scrypt limits {cost} are out of range")
    return hashlib.scrypt(
        passphrase, salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p) + (64 << 20), dklen=104
    )


def _payload(text: str, what: str, source: str) -> bytes:
    """The base64 line of a minisign file (after its untrusted comment), decoded."""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith(UNTRUSTED):
        lines = lines[1:]
    if not lines:
        raise SignatureError(f"{source}: empty, not a minisign {what}")
    try:
        return base64.b64decode(lines[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{source}: not a minisign {what} (bad base64)") from None


def secret_key_is_encrypted(text: str, source: str = "secret key") -> bool:
    data = _payload(text, "secret key", source)
    return len(data) >= 4 and data[2:4] == KDF_SCRYPT


def load_secret_key(text: str, passphrase: bytes | None, source: str = "secret key") -> SecretKey:
    """Read a secret key file (ours or ``minisign -G``'s); ``passphrase`` when encrypted."""
    data = _payload(text, "secret key", source)
    if len(data) != 2 + 2 + 2 + 32 + 16 + _SK_SECRET or data[:2] != SIG_ALG:
        raise SignatureError(f"{source}: not a minisign Ed25519 secret key")
    kdf, chk_alg, salt = data[2:4], data[4:6], data[6:38]
    ops, mem = struct.unpack("<QQ", data[38:54])
    inner = data[54:]
    if chk_alg != CHK_ALG:
        raise SignatureError(f"{source}: unknown checksum algorithm {chk_alg!r}")
    if kdf == KDF_SCRYPT:
        if passphrase is None:
            raise SignatureError(f"{source}: the secret key is encrypted: a passphrase is needed")
        inner = _xor(inner, _scrypt(passphrase, salt, KdfCost(ops, mem)))
    elif kdf != KDF_NONE:
        raise SignatureError(f"{source}: unknown key derivation {kdf!r}")
    key_id, sk, chk = inner[:8], inner[8:72], inner[72:]
    unchecked = kdf == KDF_NONE and chk == bytes(32)  # minisign -W leaves the checksum zero
    if not unchecked and hashlib.blake2b(SIG_ALG + key_id + sk, digest_size=32).digest() != chk:
        raise SignatureError(
            f"{source}: wrong passphrase (or a damaged key file): the checksum does not match"
        )
    secret = SecretKey(key_id, sk[:32])
    if secret.public.key != sk[32:]:
        raise SignatureError(f"{source}: damaged secret key (its public half does not match)")
    return secret


def parse_public_key(text: str, source: str = "public key") -> PublicKey:
    """A public key from its ``RW…`` string or the contents of a ``.pub`` file."""
    data = _payload(text, "public key", source)
    if len(data) != 42 or data[:2] != SIG_ALG:
        raise SignatureError(f"{source}: not a minisign Ed25519 public key (RW… string or file)")
    return PublicKey(data[2:10], data[10:])


def read_public_key(value: str) -> PublicKey:
    """``--publisher-key``: the ``RW…`` string itself, or a file holding it."""
    stripped = value.strip()
    if stripped.startswith("RW") and len(stripped) == 56:
        return parse_public_key(stripped, "--publisher-key")
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SignatureError(
            f"{value}: neither a public key (RW…, 56 characters) nor a readable key file ({reason})"
        ) from None
    return parse_public_key(text, str(path))


@dataclass(frozen=True)
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes

    @property
    def prehashed(self) -> bool:
        return self.algorithm == PREHASHED


def sign(
    data: bytes,
    secret: SecretKey,
    trusted_comment: str,
    untrusted_comment: str = "signature from phonotheca publisher key",
) -> str:
    """The ``.minisig`` text of a prehashed (``ED``) signature of ``data``."""
    digest = hashlib.blake2b(data, digest_size=64).digest()
    return sign_digest(digest, secret, trusted_comment, untrusted_comment)


def file_digest(path: Path, chunk: int = 1 << 20) -> bytes:
    """The BLAKE2b-512 of a file, read in chunks: what a prehashed signature signs, without
    holding the file in memory (a locator is gigabytes at the reference scale)."""
    h = hashlib.blake2b(digest_size=64)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.digest()


def sign_digest(
    digest: bytes,
    secret: SecretKey,
    trusted_comment: str,
    untrusted_comment: str = "signature from phonotheca publisher key",
) -> str:
    """The ``.minisig`` text of a prehashed (``ED``) signature of the file whose BLAKE2b-512
    is ``digest``."""
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("a trusted comment is one line")
    sig = secret.sign_raw(digest)
    global_sig = secret.sign_raw(sig + trusted_comment.encode("utf-8"))
    return (
        f"{UNTRUSTED}{untrusted_comment}\n"
        f"{base64.b64encode(PREHASHED + secret.key_id + sig).decode('ascii')}\n"
        f"{TRUSTED}{trusted_comment}\n"
        f"{base64.b64encode(global_sig).decode('ascii')}\n"
    )


def parse_signature(text: str, source: str = "signature") -> Signature:
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].startswith(UNTRUSTED) or not lines[2].startswith(TRUSTED):
        raise SignatureError(f"{source}: not a minisign signature file")
    try:
        first = base64.b64decode(lines[1].strip(), validate=True)
        global_sig = base64.b64decode(lines[3].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{source}: not a minisign signature file (bad base64)") from None
    if len(first) != 74 or first[:2] not in (SIG_ALG, PREHASHED) or len(global_sig) != 64:
        raise SignatureError(f"{source}: not an Ed25519 minisign signature")
    return Signature(first[:2], first[2:10], first[10:], lines[2][len(TRUSTED) :], global_sig)


def verify(data: bytes, signature_text: str, key: PublicKey, source: str = "file") -> Signature:
    """Check a ``.minisig`` (prehashed or legacy) of ``data`` against ``key``.

    Returns the parsed signature (its trusted comment is then authentic); raises
    :class:`SignatureError` saying whether the key or the signature is wrong.
    """
    sig = parse_signature(signature_text, f"{source}{SIGNATURE_SUFFIX}")
    if sig.key_id != key.key_id:
        raise SignatureError(
            f"{source}: signed by key {key_id_text(sig.key_id)}, not by {key.id_text}"
        )
    public = Ed25519PublicKey.from_public_bytes(key.key)
    message = hashlib.blake2b(data, digest_size=64).digest() if sig.prehashed else data
    try:
        public.verify(sig.signature, message)
    except InvalidSignature:
        raise SignatureError(
            f"{source}: bad signature: the file is not what key {key.id_text} signed"
            " (changed or damaged)"
        ) from None
    try:
        public.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode("utf-8"))
    except InvalidSignature:
        raise SignatureError(f"{source}: bad signature of the trusted comment") from None
    return sig
