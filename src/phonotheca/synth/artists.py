"""Synthetic artists: names in five scripts, and credits pre-encoded as JSON arrays."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import msgspec
import numpy as np

from phonotheca.catalog.record import ArtistCredit
from phonotheca.synth import names
from phonotheca.synth.draws import I64, Draws
from phonotheca.synth.words import all_words, draw_words

SCRIPT_WEIGHTS = (0.76, 0.09, 0.06, 0.05, 0.04)  # LATIN, DIACRITICS, CYRILLIC, CJK, ARABIC
"""Share of artists (and of compilations) by script."""

_PERSON_SHARE = {
    names.LATIN: 35,
    names.LATIN_DIACRITICS: 45,
    names.CYRILLIC: 50,
    names.CJK: 50,
    names.ARABIC: 45,
}

_ENCODER = msgspec.json.Encoder()


def artist_scripts(d: Draws, artist: I64) -> I64:
    script = d.choice("artist.script", artist.astype(np.uint64), SCRIPT_WEIGHTS)
    script[artist == 0] = names.LATIN
    return script


class Artists:
    """Names of artists by index, computed on demand (a pure function of seed and index)."""

    _LIMIT = 1 << 17

    def __init__(self, d: Draws) -> None:
        self.draws = d
        self._cache: dict[int, ArtistCredit] = {}
        self._joined: dict[tuple[int, str], bytes] = {}
        self._solo: dict[int, msgspec.Raw] = {}
        self._clear()

    def _clear(self) -> None:
        self._cache = {0: ArtistCredit(names.VARIOUS_ARTISTS, "syn:artist:0")}
        self._joined = {}
        self._solo = {}

    def prepare(self, artist: I64) -> None:
        """Compute the names of these artists (vectorised) before :meth:`credit` asks."""
        if len(self._cache) > self._LIMIT:
            self._clear()  # bounded memory: names are recomputed, never remembered
        todo = np.unique(artist)
        todo = todo[[int(a) not in self._cache for a in todo.tolist()]]
        if len(todo):
            self._build(todo)

    def _entry(self, artist: int, join: str) -> bytes:
        key = (artist, join)
        entry = self._joined.get(key)
        if entry is None:
            c = self._cache[artist]
            credit = ArtistCredit(c.name, c.id, c.sort_name, join) if join else c
            entry = self._joined[key] = _ENCODER.encode(credit)
        return entry

    def name(self, artist: int) -> str:
        return self._cache[artist].name

    def credit_json(self, people: Sequence[int], featuring: bool = False) -> msgspec.Raw:
        """A credit as a JSON array, in order: "A", "A & B", "A, B & C", "A feat. B", ..."""
        if len(people) == 1:
            raw = self._solo.get(people[0])
            if raw is None:
                raw = self._solo[people[0]] = msgspec.Raw(b"[" + self._entry(people[0], "") + b"]")
            return raw
        parts = [
            self._entry(a, j) for a, j in zip(people, _joins(len(people), featuring), strict=True)
        ]
        return msgspec.Raw(b"[" + b",".join(parts) + b"]")

    def _build(self, ids: I64) -> None:
        d, u = self.draws, ids.astype(np.uint64)
        script = artist_scripts(d, ids).tolist()
        pattern = d.below("artist.pattern", u, 100).tolist()
        first = d.bits("artist.first", u).tolist()
        last = d.bits("artist.last", u).tolist()
        with_sort = d.chance("artist.sort", u, 0.75).tolist()
        made_up = (d.bits("artist.madeup", u) >> np.uint64(34)).tolist()
        # frequent words but not the very top ("the", "you", "i"): "The Fire Foxes"
        scripts = np.asarray(script, np.int64)
        w1 = draw_words(d, "artist.word1", u, scripts, skip=20, top=300).tolist()
        w2 = draw_words(d, "artist.word2", u, scripts, skip=20, top=2000).tolist()
        words = all_words().words
        for a, s, p, f, la, srt, mu, x1, x2 in zip(
            ids.tolist(), script, pattern, first, last, with_sort, made_up, w1, w2, strict=True
        ):
            sort_name: str | None = None
            if p < _PERSON_SHARE[s]:
                fn = names.FIRST_NAMES[s][f % len(names.FIRST_NAMES[s])]
                ln = names.LAST_NAMES[s][la % len(names.LAST_NAMES[s])]
                if s == names.CJK:
                    name = f"{ln} {fn}"  # family name first, space-separated
                elif s == names.ARABIC and p < 15:
                    name = fn  # known by one name
                else:
                    name = f"{fn} {ln}"
                    sort_name = f"{ln}, {fn}" if srt else None
            elif s == names.LATIN and p < 55:
                noun = names.BAND_NOUNS[la % len(names.BAND_NOUNS)]
                name = f"The {words[x1]} {noun}"
                sort_name = f"{words[x1]} {noun}, The" if srt else None
            elif s == names.LATIN and p < 67:
                prefix = names.ARTIST_PREFIXES[f % len(names.ARTIST_PREFIXES)]
                name = f"{prefix} {words[x2]}"
            elif s in (names.LATIN, names.LATIN_DIACRITICS) and p < 85:
                name = names.made_up_name(s, mu)  # "Motörhead"-like
            elif s == names.LATIN_DIACRITICS:
                name = f"{names.made_up_name(s, mu)} {names.made_up_name(s, mu + 1)}"
            elif s != names.LATIN and p < 75:
                name = str(words[x1])
            else:
                name = f"{words[x1]} {words[x2]}"
            self._cache[a] = ArtistCredit(name, f"syn:artist:{a}", sort_name)


@cache
def _joins(n: int, featuring: bool) -> tuple[str, ...]:
    if n == 1:
        return ("",)
    if featuring:
        return (" & ",) * (n - 2) + (" feat. ", "")
    return (", ",) * (n - 2) + (" & ", "")
