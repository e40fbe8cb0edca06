"""``state.sqlite3``: users and credentials, stars, scrobbles and playlists on a real file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from phonotheca.serve.state import SCHEMA_VERSION, StateError, StateStore


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite3", password_cost=12)


def test_passwords_are_scrypt_hashed(store: StateStore, tmp_path: Path) -> None:
    user = store.add_user("alice", "correct horse", admin=True)
    assert user.admin and user.name == "alice" and user.id > 0
    assert store.verify_password("alice", "correct horse") == store.get_user("alice")
    assert store.verify_password("alice", "Correct horse") is None
    assert store.verify_password("nobody", "correct horse") is None
    stored = sqlite3.connect(tmp_path / "state.sqlite3").execute("SELECT password FROM users")
    (text,) = stored.fetchone()
    assert text.startswith("scrypt$") and "correct horse" not in text
    # Same password, another user: another salt, another hash.
    store.add_user("bob", "correct horse")
    hashes = [
        r[0]
        for r in sqlite3.connect(tmp_path / "state.sqlite3").execute("SELECT password FROM users")
    ]
    assert hashes[0] != hashes[1]
    store.set_password("bob", "battery staple")
    assert store.verify_password("bob", "battery staple") and not store.verify_password(
        "bob", "correct horse"
    )


def test_user_errors(store: StateStore) -> None:
    store.add_user("alice", "long enough")
    with pytest.raises(StateError, match="exists"):
        store.add_user("alice", "long enough")
    with pytest.raises(StateError, match="at least"):
        store.add_user("carol", "short")
    with pytest.raises(StateError, match="user name"):
        store.add_user("a/b", "long enough")
    with pytest.raises(StateError, match="no user"):
        store.rotate_subsonic_credentials("nobody")


def test_rotating_subsonic_credentials_invalidates_the_old_ones(
    store: StateStore, tmp_path: Path
) -> None:
    store.add_user("alice", "web password")
    assert store.subsonic_password("alice") == (store.get_user("alice"), None)
    first = store.rotate_subsonic_credentials("alice")
    assert store.user_by_api_key(first.api_key) == store.get_user("alice")
    second = store.rotate_subsonic_credentials("alice")
    assert second.password != first.password and second.api_key != first.api_key
    assert store.user_by_api_key(first.api_key) is None
    assert store.user_by_api_key(second.api_key) is not None
    found = store.subsonic_password("alice")
    assert found is not None and found[1] == second.password
    # The API key is kept only hashed; the web password is not the Subsonic one.
    dump = "\n".join(sqlite3.connect(tmp_path / "state.sqlite3").iterdump())
    assert second.api_key not in dump and "web password" not in dump
    assert store.verify_password("alice", second.password) is None


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path, password_cost=12)
    alice = store.add_user("alice", "long enough")
    store.star(alice.id, "track", ["syn:track:1", "syn:track:2"])
    store.star(alice.id, "album", ["syn:album:1"])
    store.unstar(alice.id, "track", ["syn:track:2"])
    store.scrobble(alice.id, [("syn:track:1", 1000), ("syn:track:1", 5000), ("syn:track:3", 3000)])
    store.scrobble(alice.id, [("syn:track:9", 9000)], submission=False)
    playlist = store.create_playlist(alice.id, "mix", ["syn:track:3", "syn:track:1", "syn:track:3"])
    store.update_playlist(
        playlist.id, comment="for the road", add=["syn:track:4"], remove_positions=[1]
    )
    store.close()

    again = StateStore(path)
    assert set(again.starred(alice.id, "track")) == {"syn:track:1"}
    assert set(again.starred(alice.id, "album")) == {"syn:album:1"}
    assert again.starred(alice.id, "track", ["syn:track:1", "syn:track:2"]).keys() == {
        "syn:track:1"
    }
    assert sorted(again.play_counts(alice.id)) == [
        ("syn:track:1", 2, 5000),
        ("syn:track:3", 1, 3000),
    ]
    kept = again.get_playlist(playlist.id)
    assert kept is not None and kept.comment == "for the road" and kept.owner == "alice"
    assert kept.tracks == ["syn:track:3", "syn:track:3", "syn:track:4"]
    # Removing a user removes everything of theirs.
    again.remove_user("alice")
    assert again.get_playlist(playlist.id) is None and again.starred(alice.id, "track") == {}


def test_playlists_visibility(store: StateStore) -> None:
    alice = store.add_user("alice", "long enough")
    bob = store.add_user("bob", "long enough")
    private = store.create_playlist(alice.id, "private", ["x"])
    public = store.create_playlist(alice.id, "shared", ["y"], public=True)
    assert {p.id for p in store.playlists(alice.id)} == {private.id, public.id}
    assert {p.id for p in store.playlists(bob.id)} == {public.id}


def test_many_threads_write_at_once(store: StateStore) -> None:
    user = store.add_user("alice", "long enough")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.scrobble(user.id, [(f"t{n}", i)])
                store.star(user.id, "track", [f"t{n}-{i}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(n for _, n, _ in store.play_counts(user.id)) == 120
    assert len(store.starred(user.id, "track")) == 120


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    StateStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer"):
        StateStore(path)
