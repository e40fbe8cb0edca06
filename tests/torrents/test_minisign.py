"""Publisher keys and signatures: our files and Debian's minisign read each other's."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.torrents import minisign
from phonotheca.torrents.keys import ArchiveKeys, generate_keys, load_secret, sign_file
from phonotheca.torrents.minisign import SignatureError

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(MINISIGN is None, reason="Debian's minisign is not installed")


def _archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    result = CliRunner().invoke(main, ["init", str(root), "--name", "demo"])
    assert result.exit_code == 0, result.output
    return root


def _generate(root: Path, *args: str, stdin: str | None = None) -> dict[str, object]:
    result = CliRunner().invoke(
        main, ["key", "generate", "--archive", str(root), "--json", *args], input=stdin
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _verify(file: Path, key: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["key", "verify", str(file), "--publisher-key", key])
    return result.exit_code, result.output


def test_generate_show_and_files(tmp_path: Path) -> None:
    root = _archive(tmp_path)
    made = _generate(root, "--no-passphrase")
    keys = ArchiveKeys(root)
    assert stat.S_IMODE(keys.secret.stat().st_mode) == 0o600
    lines = keys.public.read_text().splitlines()
    assert lines == [f"untrusted comment: minisign public key {made['key_id']}", made["public_key"]]
    shown = CliRunner().invoke(main, ["key", "show", "--archive", str(root)])
    assert shown.exit_code == 0
    assert f"key id {made['key_id']}" in shown.output and str(made["public_key"]) in shown.output
    # A second key would orphan every mirror that pinned the first: refused, nothing changed.
    before = keys.secret.read_bytes()
    again = CliRunner().invoke(main, ["key", "generate", "--archive", str(root), "--no-passphrase"])
    assert again.exit_code == 1 and "already has a publisher key" in again.output
    assert keys.secret.read_bytes() == before
    # No terminal, no flag: a clear line, no key.
    other = _archive(tmp_path / "other")
    asked = CliRunner().invoke(main, ["key", "generate", "--archive", str(other)])
    assert asked.exit_code == 1 and "--passphrase-stdin" in asked.output
    assert not ArchiveKeys(other).secret.exists()


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    keys = ArchiveKeys(tmp_path)
    public = generate_keys(keys, b"correct horse", cost=minisign.INTERACTIVE)
    assert minisign.secret_key_is_encrypted(keys.secret.read_text())
    assert load_secret(keys, lambda: b"correct horse").public == public
    with pytest.raises(SignatureError, match="wrong passphrase"):
        load_secret(keys, lambda: b"wrong")


def test_scrypt_parameters_match_libsodium() -> None:
    # minisign's default (1 GiB) and libsodium's interactive level (16 MiB).
    assert minisign.scrypt_params(minisign.SENSITIVE) == (1 << 20, 8, 1)
    assert minisign.scrypt_params(minisign.INTERACTIVE) == (1 << 14, 8, 1)


def test_tampered_or_foreign_signatures_are_refused(tmp_path: Path) -> None:
    keys = ArchiveKeys(tmp_path / "a")
    generate_keys(keys, None)
    secret = load_secret(keys, lambda: b"")
    f = tmp_path / "listing.json"
    f.write_bytes(b'{"seq": 1}\n')
    sign_file(f, secret)
    pub = keys.public.read_text().splitlines()[1]
    assert _verify(f, pub)[0] == 0
    f.write_bytes(b'{"seq": 2}\n')
    code, output = _verify(f, pub)
    assert code == 1 and "bad signature" in output
    other = ArchiveKeys(tmp_path / "b")
    other_pub = generate_keys(other, None)
    f.write_bytes(b'{"seq": 1}\n')
    code, output = _verify(f, other_pub.to_base64())
    assert code == 1 and f"not by {other_pub.id_text}" in output
    (tmp_path / "listing.json.minisig").unlink()
    code, output = _verify(f, pub)
    assert code == 1 and "not signed" in output
    code, output = _verify(f, "RWnot-a-key")
    assert code == 1 and "RWnot-a-key" in output


@needs_minisign
@pytest.mark.parametrize("passphrase", [None, "s3cret pass"])
def test_minisign_signs_with_our_key_and_we_verify(tmp_path: Path, passphrase: str | None) -> None:
    keys = ArchiveKeys(tmp_path)
    generate_keys(keys, passphrase.encode() if passphrase else None, cost=minisign.INTERACTIVE)
    pub = keys.public.read_text().splitlines()[1]
    f = tmp_path / "torrents.json"
    f.write_bytes(b"any bytes \x00\xff\n" * 100)
    for legacy, kind in ((False, "prehashed"), (True, "legacy")):
        subprocess.run(
            [
                str(MINISIGN),
                "-S",
                *(["-l"] if legacy else []),
                "-s",
                str(keys.secret),
                "-m",
                str(f),
            ],
            input=(passphrase + "\n") if passphrase else "",
            capture_output=True,
            text=True,
            check=True,
        )
        line = (tmp_path / "torrents.json.minisig").read_text().splitlines()[1]
        assert base64.b64decode(line)[:2] == (b"Ed" if legacy else b"ED")
        code, output = _verify(f, str(keys.public))
        assert code == 0, output
        assert kind in output
        assert _verify(f, pub)[0] == 0


@needs_minisign
def test_minisign_verifies_our_signatures_and_its_keys_verify_with_us(tmp_path: Path) -> None:
    keys = ArchiveKeys(tmp_path / "ours")
    generate_keys(keys, None)
    f = tmp_path / "torrents.json"
    f.write_bytes(b'{"format": "phonotheca-torrents"}\n')
    sign_file(f, load_secret(keys, lambda: b""))
    done = subprocess.run(
        [str(MINISIGN), "-V", "-H", "-p", str(keys.public), "-m", str(f)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "file:torrents.json" in done.stdout
    f.write_bytes(b'{"format": "phonotheca-torrentz"}\n')
    tampered = subprocess.run(
        [str(MINISIGN), "-V", "-p", str(keys.public), "-m", str(f)], capture_output=True
    )
    assert tampered.returncode != 0

    # A key pair minisign made: its public key verifies its signatures here.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    subprocess.run(
        [str(MINISIGN), "-G", "-W", "-p", str(theirs / "k.pub"), "-s", str(theirs / "k.key")],
        capture_output=True,
        check=True,
    )
    subprocess.run(
        [str(MINISIGN), "-S", "-s", str(theirs / "k.key"), "-m", str(f)],
        capture_output=True,
        check=True,
    )
    code, output = _verify(f, str(theirs / "k.pub"))
    assert code == 0, output
    # And its secret key file loads here, signing what minisign verifies.
    secret = minisign.load_secret_key((theirs / "k.key").read_text(), None)
    assert secret.public == minisign.parse_public_key((theirs / "k.pub").read_text())
