"""Commands: ``user add/passwd/token/list/remove``: accounts in ``state.sqlite3``.

A user has a web password (scrypt-hashed, for the site) and, once ``user token`` has
run, a generated Subsonic password and OpenSubsonic API key for music apps.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from phonotheca.cli import archive_at, archive_option, json_option, main, out, print_json
from phonotheca.serve.state import StateError, StateStore, User


@main.group()
def user() -> None:
    """Manage the server's users and their Subsonic credentials."""


@contextmanager
def _store(archive_dir: Path) -> Iterator[StateStore]:
    archive = archive_at(archive_dir)
    try:
        store = StateStore(archive.state_path, password_cost=archive.settings.serve.password_cost)
    except StateError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield store
    except StateError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("--password-stdin: no password on standard input")
        return password
    typed: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


def _user_json(u: User) -> dict[str, object]:
    return {
        "name": u.name,
        "admin": u.admin,
        "created_at": u.created_at,
        "subsonic": u.has_subsonic_password,
        "api_key_hint": u.api_key_hint,
    }


password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)


@user.command("add")
@click.argument("name")
@password_stdin
@click.option("--admin", is_flag=True, help="May manage other users' playlists and records.")
@archive_option
@json_option
def user_add(
    name: str, password_stdin: bool, admin: bool, archive_dir: Path, as_json: bool
) -> None:
    """Create user NAME with a web password (asked twice, hidden)."""
    with _store(archive_dir) as store:
        created = store.add_user(name, _read_password(password_stdin), admin=admin)
    if as_json:
        print_json(_user_json(created))
    else:
        out.print(
            f"user {created.name!r} created{' (admin)' if created.admin else ''}; for music"
            f" apps run 'phonotheca user token {created.name}'",
            highlight=False,
        )


@user.command("passwd")
@click.argument("name")
@password_stdin
@archive_option
def user_passwd(name: str, password_stdin: bool, archive_dir: Path) -> None:
    """Set the web password of user NAME; their web sessions end (signed-in browsers
    must sign in again). Their Subsonic password and API key stay: see 'user token'."""
    with _store(archive_dir) as store:
        store.set_password(name, _read_password(password_stdin))
    out.print(f"password of {name!r} changed", highlight=False)


@user.command("token")
@click.argument("name")
@archive_option
@json_option
def user_token(name: str, archive_dir: Path, as_json: bool) -> None:
    """Make (or replace) the Subsonic password and API key of user NAME, and print them.

    Type the user name and this password into a Subsonic app (server URL: where
    'phonotheca serve' listens), or give the API key to an OpenSubsonic app. The old
    password and key stop working. They are shown only now: the API key is stored hashed.
    """
    with _store(archive_dir) as store:
        creds = store.rotate_subsonic_credentials(name)
    if as_json:
        print_json({"user": creds.user, "password": creds.password, "api_key": creds.api_key})
        return
    out.print(f"Subsonic credentials for {creds.user!r} (shown once):", highlight=False)
    out.print(f"  user:     {creds.user}", highlight=False)
    out.print(f"  password: {creds.password}", highlight=False)
    out.print(f"  API key:  {creds.api_key}", highlight=False)


@user.command("list")
@archive_option
@json_option
def user_list(archive_dir: Path, as_json: bool) -> None:
    """List the users, whether they have Subsonic credentials, and their API key hints."""
    with _store(archive_dir) as store:
        users = store.list_users()
    if as_json:
        print_json([_user_json(u) for u in users])
        return
    if not users:
        out.print("no users: add one with 'phonotheca user add NAME'", highlight=False)
    for u in users:
        subsonic = f"API key {u.api_key_hint}..." if u.has_subsonic_password else "no Subsonic"
        admin = " admin" if u.admin else ""
        out.print(f"{u.name}{admin}  created {u.created_at}  {subsonic}", highlight=False)


@user.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@archive_option
def user_remove(name: str, yes: bool, archive_dir: Path) -> None:
    """Delete user NAME with their stars, scrobbles and playlists."""
    with _store(archive_dir) as store:
        if store.get_user(name) is None:
            raise click.ClickException(f"no user {name!r}: see 'phonotheca user list'")
        if not yes:
            click.confirm(f"Delete user {name!r} and their playlists, stars and plays?", abort=True)
        store.remove_user(name)
    out.print(f"user {name!r} removed", highlight=False)
