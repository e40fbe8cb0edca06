"""Commands: key generate, key show, key verify (the publisher's signing key, issue 17)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from phonotheca.cli import archive_at, archive_option, err, json_option, main, out, print_json
from phonotheca.torrents import minisign
from phonotheca.torrents.keys import (
    ArchiveKeys,
    generate_keys,
    load_secret,
    public_key,
    verify_file,
)
from phonotheca.torrents.minisign import SecretKey, SignatureError

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def key_errors() -> Iterator[None]:
    try:
        yield
    except SignatureError as exc:
        raise click.ClickException(str(exc)) from exc


def passphrase_stdin_option(f: F) -> F:
    return click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="Read the key's passphrase from the first line of standard input (for scripts).",
    )(f)


def _stdin_passphrase() -> bytes:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.ClickException("--passphrase-stdin: no passphrase on standard input")
    return line.encode("utf-8")


def passphrase_reader(from_stdin: bool, keys: ArchiveKeys) -> Callable[[], bytes]:
    """How to get the passphrase of an encrypted key: stdin, else asked on a terminal."""

    def read() -> bytes:
        if from_stdin:
            return _stdin_passphrase()
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"{keys.secret} is encrypted and there is no terminal to ask its passphrase:"
                " pass --passphrase-stdin and write it on standard input"
            )
        typed: str = click.prompt(f"Passphrase of {keys.secret}", hide_input=True, err=True)
        return typed.encode("utf-8")

    return read


def unlock_archive_key(archive_root: Path, from_stdin: bool) -> SecretKey | None:
    """The archive's secret key when it has one (asking its passphrase), else None."""
    keys = ArchiveKeys(archive_root)
    if not keys.exists():
        return None
    with key_errors():
        return load_secret(keys, passphrase_reader(from_stdin, keys))


@main.group("key")
def key_group() -> None:
    """The publisher's signing key: torrents.json is signed with it (minisign format)."""


@key_group.command("generate")
@archive_option
@passphrase_stdin_option
@click.option("--no-passphrase", is_flag=True, help="Leave the secret key unencrypted.")
@click.option("--weak-kdf", is_flag=True, hidden=True, help="16 MiB scrypt (tests only).")
@json_option
def key_generate(
    archive_dir: Path, passphrase_stdin: bool, no_passphrase: bool, weak_kdf: bool, as_json: bool
) -> None:
    """Make the archive's Ed25519 key pair in ARCHIVE/keys/.

    The secret key (publisher.key, mode 0600) stays on this machine: back it up offline.
    Its passphrase is asked on a terminal (twice), read with --passphrase-stdin, or left
    out with --no-passphrase. publisher.pub is what mirror operators pin. Both are in
    minisign's formats: `minisign -S -s ARCHIVE/keys/publisher.key` signs with it too.
    """
    if passphrase_stdin and no_passphrase:
        raise click.UsageError("give at most one of --passphrase-stdin and --no-passphrase")
    archive = archive_at(archive_dir)
    keys = ArchiveKeys(archive.root)
    passphrase: bytes | None = None
    if passphrase_stdin:
        passphrase = _stdin_passphrase()
    elif not no_passphrase:
        if not sys.stdin.isatty():
            raise click.ClickException(
                "no terminal to ask a passphrase: pass --passphrase-stdin (and write it on"
                " standard input) or --no-passphrase"
            )
        typed: str = click.prompt(
            "Passphrase of the new key", hide_input=True, confirmation_prompt=True, err=True
        )
        passphrase = typed.encode("utf-8") or None
    cost = minisign.INTERACTIVE if weak_kdf else minisign.SENSITIVE
    with key_errors():
        key = generate_keys(keys, passphrase, cost=cost)
    _print_key(key, keys, as_json, encrypted=passphrase is not None)
    if not as_json:
        err.print(
            f"secret key: {keys.secret} (mode 0600; never publish it; keep a copy offline)",
            soft_wrap=True,
        )


def _print_key(
    key: minisign.PublicKey, keys: ArchiveKeys, as_json: bool, encrypted: bool | None = None
) -> None:
    if as_json:
        data: dict[str, object] = {
            "key_id": key.id_text,
            "public_key": key.to_base64(),
            "public_key_file": str(keys.public),
        }
        if encrypted is not None:
            data["encrypted"] = encrypted
        print_json(data)
        return
    out.print(f"key id {key.id_text}", highlight=False)
    out.print(key.to_base64(), highlight=False, soft_wrap=True)
    err.print(f"public key file: {keys.public}", highlight=False, soft_wrap=True)


@key_group.command("show")
@archive_option
@json_option
def key_show(archive_dir: Path, as_json: bool) -> None:
    """Print the archive's public key and its key id (what mirror operators pin)."""
    archive = archive_at(archive_dir)
    keys = ArchiveKeys(archive.root)
    with key_errors():
        key = public_key(keys)
    _print_key(key, keys, as_json)


@key_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--publisher-key",
    required=True,
    help="The public key: its RW… string, or a file holding it (publisher.pub).",
)
@json_option
def key_verify(file: Path, publisher_key: str, as_json: bool) -> None:
    """Check FILE against FILE.minisig (made by phonotheca or `minisign -S`).

    Exits non-zero, with the reason, when the signature is missing, bad or by another key.
    """
    with key_errors():
        key = minisign.read_public_key(publisher_key)
        sig = verify_file(file, key)
    if as_json:
        print_json(
            {
                "file": str(file),
                "ok": True,
                "key_id": key.id_text,
                "prehashed": sig.prehashed,
                "trusted_comment": sig.trusted_comment,
            }
        )
        return
    out.print(
        f"{file}: signature ok, key {key.id_text}"
        f" ({'prehashed' if sig.prehashed else 'legacy'}); trusted comment:"
        f" {sig.trusted_comment}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
