"""The demo's part of phonotheca.toml: written once, rewritten when the URL changes,
untouched otherwise; the block of earlier demo versions is replaced, not duplicated."""

from __future__ import annotations

from pathlib import Path

from phonotheca.config import load_settings
from phonotheca.demo import write_settings

HEAD = '# Phonotheca archive settings.\n[archive]\nname = "demo"\n'
OLD_BLOCK = """
[build]
collection_size = "12MB"      # the demo's collections are small; the default is 100 GiB
volume_size = "4MB"

[serve]
host = "127.0.0.1"
port = 8080
"""


def test_settings_follow_the_demo_url_and_are_rewritten_only_on_change(tmp_path: Path) -> None:
    (tmp_path / "phonotheca.toml").write_text(HEAD + OLD_BLOCK)  # an earlier demo's folder
    write_settings(tmp_path, "127.0.0.1", 8080)
    settings = load_settings(tmp_path)
    assert settings.torrents.web_seeds == ("http://127.0.0.1:8080/torrents/",)
    assert settings.torrents.base_url == "http://127.0.0.1:8080/"
    assert settings.build.collection_size == 12_000_000
    text = (tmp_path / "phonotheca.toml").read_text()
    assert text.startswith(HEAD) and text.count("[build]") == 1
    before = (tmp_path / "phonotheca.toml").stat().st_mtime_ns
    write_settings(tmp_path, "127.0.0.1", 8080)
    assert (tmp_path / "phonotheca.toml").stat().st_mtime_ns == before
    write_settings(tmp_path, "127.0.0.1", 9090)
    settings = load_settings(tmp_path)
    assert settings.serve.port == 9090
    assert settings.torrents.web_seeds == ("http://127.0.0.1:9090/torrents/",)
    assert (tmp_path / "phonotheca.toml").read_text().count("[torrents]") == 1
