"""Playlist import: a 10,000-entry JSPF playlist matched against catalogs of two sizes.

The playlist's entries are taken from the catalog: a third by MusicBrainz recording URL,
a third by ISRC, a third by title, artist and duration (matched through the search
index), and one entry in ten names nothing in the catalog. ``import playlists`` runs end
to end (a process, as a user runs it), into a copy of each catalog; the figure is the
import's own time (its summary's ``seconds``), the command's wall time beside it (which
adds the refresh of the lists a server reads, in proportion to the catalog, as every
import does).

Baseline, measured in the same run: ``import jsonl`` of as many tracks (10,000 lines)
into a copy of the same catalog: the cost of a record through the core importer.
Target: the playlist's import costs about what its entries' tracks would, and does not
grow with the catalog (the figures at both sizes are close).

    .venv/bin/python bench/playlists.py [--tracks N ...] [--entries E] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, phonotheca_cmd, run_measured, synthetic_catalog


def _records(source: Path) -> list[dict[str, object]]:
    with source.open("rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return [json.loads(line) for line in data.splitlines()]


def _playlist(records: list[dict[str, object]], entries: int) -> dict[str, object]:
    step = max(1, len(records) // entries)
    out: list[dict[str, object]] = []
    for n in range(entries):
        rec = records[(n * step) % len(records)]
        artists = rec["artists"]
        creator = artists[0]["name"] if isinstance(artists, list) and artists else None
        if n % 10 == 9:
            out.append({"title": f"Not in the catalog {n}", "creator": "Nobody"})
        elif n % 3 == 0 and (ext := rec.get("external_ids")):
            mbid = ext["musicbrainz_recording"]  # type: ignore[index]
            out.append({"identifier": f"https://musicbrainz.org/recording/{mbid}"})
        elif n % 3 == 1 and rec.get("isrc"):
            out.append({"identifier": f"isrc:{rec['isrc']}", "title": rec["title"]})
        else:
            out.append(
                {"title": rec["title"], "creator": creator, "duration": rec.get("duration_ms")}
            )
    return {"playlist": {"title": "Bench", "track": out}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    work = args.workdir / "playlists"
    work.mkdir(parents=True, exist_ok=True)
    print(f"playlist of {args.entries:,} entries; baseline: import jsonl of as many tracks")
    for n in args.tracks:
        source = synthetic_catalog(args.workdir, n)
        base = work / f"catalog-{n}"
        if not (base / "catalog.sqlite3").exists():
            shutil.rmtree(base, ignore_errors=True)
            run_measured(phonotheca_cmd("import", "jsonl", str(source), "--archive", str(base)))
        records = _records(source)
        jspf = work / f"bench-{n}.json"
        jspf.write_text(json.dumps(_playlist(records, args.entries)))
        extra = work / f"extra-{n}.jsonl"
        with extra.open("w") as f:
            for i in range(args.entries):
                rec = dict(records[i % len(records)])
                rec["id"] = f"bench:extra:{i}"
                f.write(json.dumps(rec) + "\n")
        figures = {}
        for name, cmd in (
            ("playlist", ["import", "playlists", str(jspf), "--json"]),
            ("baseline", ["import", "jsonl", str(extra), "--json"]),
        ):
            copy = work / f"copy-{n}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(base, copy)
            run = run_measured(phonotheca_cmd(*cmd, "--archive", str(copy)))
            summary = json.loads(run.stdout)
            figures[name] = (run.seconds, summary[0] if isinstance(summary, list) else summary)
            shutil.rmtree(copy)
        (wall, summary), (base_wall, base_summary) = figures["playlist"], figures["baseline"]
        seconds, base_seconds = summary["seconds"], base_summary["seconds"]
        counts = summary["playlists"]
        print(
            f"catalog {n:>9,} tracks: playlist {seconds:6.1f} s"
            f" ({args.entries / seconds:,.0f} entries/s; {wall:.1f} s with the command's"
            " index and list refresh)"
        )
        print(
            f"{'':24}matched mbid {counts['mbid']:,}, isrc {counts['isrc']:,}, name"
            f" {counts['name']:,}, unmatched {counts['unmatched']:,}"
        )
        print(
            f"{'':24}baseline {base_seconds:6.1f} s ({args.entries / base_seconds:,.0f}"
            f" tracks/s; {base_wall:.1f} s); ratio {seconds / base_seconds:.2f}"
        )


if __name__ == "__main__":
    main()
