"""Commands: serve: the web site, JSON API and Subsonic API (issue 8)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from phonotheca.cli import main, until_stopped, user_errors
from phonotheca.config import Settings, load_settings


@main.command("serve")
@click.option(
    "--archive",
    "archive_dirs",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    envvar="PHONOTHECA_ARCHIVE",
    show_default="current directory, or $PHONOTHECA_ARCHIVE",
    help="Archive or mirror directory; repeat to serve collections from several disks "
    "(the catalog and settings are the first one's).",
)
@click.option(
    "--host", default=None, help="Address to listen on  [default: [serve] host, 127.0.0.1]"
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on  [default: [serve] port, 8080]",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=lambda: os.cpu_count() or 1,
    show_default="number of CPUs",
    help="Server processes; more than one uses several cores (each process opens its own"
    " catalog connections).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    metavar="IPS",
    help="Proxies trusted to set X-Forwarded-Proto (e.g. 127.0.0.1 behind nginx); "
    "sessions get the Secure flag when the original request was https.",
)
@click.option(
    "--on-demand/--no-on-demand",
    default=None,
    help="Play tracks this server does not hold by fetching them from their torrents'"
    " web seeds when played  [default: [serve] on_demand, off]",
)
@click.option(
    "--cache-budget",
    default=None,
    metavar="SIZE",
    help="Most bytes of on-demand tracks kept for replay, e.g. 10GB"
    "  [default: [serve] cache_budget, 10GB]",
)
def serve(
    archive_dirs: tuple[Path, ...],
    host: str | None,
    port: int | None,
    workers: int,
    forwarded_allow_ips: str | None,
    on_demand: bool | None,
    cache_budget: str | None,
) -> None:
    """Serve the web UI, the JSON API (/api/v1) and the Subsonic API (/rest).

    Plays the tracks whose bytes are here: in a builder's archive the volumes it built,
    in a mirror the pieces it has verified. Audio needs a signed-in user unless
    [serve] public_audio is true; add users with 'phonotheca user add'. A builder's
    archive also serves torrents.json and torrents/ as serve-files does (a BEP 19 web
    seed). Stop with Ctrl-C or SIGTERM (exit status 0).

    Music apps see two folders, the tracks played here and the whole catalog
    ([serve] subsonic_library picks what an app that names none lists); their lists are
    kept in FIRST-ARCHIVE/library.sqlite3, made again when the catalog or the collections
    held change.

    With --on-demand, a packed track whose collection is not here is fetched when
    played, piece by verified piece, from the web seeds of its torrent, and kept in
    FIRST-ARCHIVE/.ondemand-cache within --cache-budget.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from phonotheca.serve.app import ROOTS_VARIABLE, create_app
    from phonotheca.serve.context import ServeContext, check_roots
    from phonotheca.serve.listener import TcpConfig
    from phonotheca.serve.security import load_key
    from phonotheca.serve.state import StateStore

    roots = list(archive_dirs) or [Path(".")]
    with user_errors():
        check_roots(roots)
        settings = _with_on_demand(load_settings(roots[0]), on_demand, cache_budget)
    ctx = ServeContext(settings=settings, roots=[r.resolve() for r in roots])
    bind_host = host or settings.serve.host
    bind_port = settings.serve.port if port is None else port
    url = f"http://{bind_host}:{bind_port}/"
    options: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_level": None,  # the levels of _quiet_lifecycle() stand
        "log_config": _quiet_lifecycle(),
        "proxy_headers": forwarded_allow_ips is not None,
        "forwarded_allow_ips": forwarded_allow_ips,
        "server_header": False,
    }
    try:
        with until_stopped(f"serving {url}"):
            click.echo(f"serving {', '.join(str(r) for r in ctx.roots)} on {url}", err=True)
            if workers == 1:
                uvicorn.Server(uvicorn.Config(create_app(ctx), **options)).run()
            else:
                # Worker processes build their own app from the roots passed in the
                # environment; the state database is migrated and the session key made
                # here, once. SIGINT and SIGTERM reach this parent process, which stops
                # the workers before it returns.
                StateStore(ctx.state_path).close()
                load_key(ctx.roots[0])
                os.environ[ROOTS_VARIABLE] = os.pathsep.join(str(r) for r in ctx.roots)
                _export_on_demand(on_demand, cache_budget)
                config = TcpConfig(
                    "phonotheca.serve.app:create_app_from_environment",
                    factory=True,
                    workers=workers,
                    **options,
                )
                Multiprocess(config, sockets=[config.bind_socket()]).run()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {bind_host}:{bind_port}: {exc}") from exc


def _serve_options(on_demand: bool | None, cache_budget: str | None) -> dict[str, Any]:
    """The ``[serve]`` values the command line sets (checked as the settings file's)."""
    from phonotheca.config import SettingsError, parse_serve_value

    options: dict[str, Any] = {}
    if on_demand is not None:
        options["on_demand"] = on_demand
    if cache_budget is not None:
        try:
            options["cache_budget"] = parse_serve_value("cache_budget", cache_budget)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--cache-budget") from None
    return options


def _with_on_demand(
    settings: Settings, on_demand: bool | None, cache_budget: str | None
) -> Settings:
    options = _serve_options(on_demand, cache_budget)
    return replace(settings, serve=replace(settings.serve, **options)) if options else settings


def _export_on_demand(on_demand: bool | None, cache_budget: str | None) -> None:
    """Hand the command line's ``[serve]`` values to the worker processes."""
    from phonotheca.serve.app import SERVE_VARIABLE

    os.environ[SERVE_VARIABLE] = json.dumps(_serve_options(on_demand, cache_budget))


def _quiet_lifecycle() -> dict[str, Any]:
    """uvicorn's logging with its start and stop messages left out (the command says in one
    line what it serves and that it stopped); requests and errors are still logged."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    return config
