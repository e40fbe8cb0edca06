"""Title words: Zipf draws from each script's vocabulary (the tables are seed-independent)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from phonotheca.synth import names
from phonotheca.synth.draws import I64, U64, Draws


@dataclass(frozen=True)
class Words:
    words: npt.NDArray[np.object_]
    """All scripts' title words, concatenated."""
    offset: tuple[int, ...]
    size: tuple[int, ...]


@cache
def all_words() -> Words:
    words: list[str] = []
    offset, size = [], []
    for script in names.SCRIPTS:
        vocab = names.vocabulary(script).words
        offset.append(len(words))
        size.append(len(vocab))
        words.extend(vocab)
    arr = np.empty(len(words), dtype=object)
    arr[:] = words
    return Words(arr, tuple(offset), tuple(size))


@cache
def _zipf_thresholds(size: int) -> U64:
    """Cut points of a Zipf-Mandelbrot law over ranks 0..size-1, P(r) ~ 1 / (r + 2.7)."""
    acc = np.cumsum(1.0 / (np.arange(size, dtype=np.float64) + 2.7))  # sequential sum
    cuts: U64 = np.floor(acc[:-1] / acc[-1] * 2.0**63).astype(np.uint64) * np.uint64(2)
    return cuts


def draw_words(d: Draws, name: str, idx: U64, script: I64, *, skip: int = 0, top: int = 0) -> I64:
    """One Zipf word per index from its script's vocabulary, ranks in [skip, top)."""
    w = all_words()
    bits = d.bits(name, idx)
    out = np.empty(len(idx), dtype=np.int64)
    for s in names.SCRIPTS:
        m = script == s
        if m.any():
            cuts = _zipf_thresholds((min(top, w.size[s]) if top else w.size[s]) - skip)
            out[m] = w.offset[s] + skip + np.searchsorted(cuts, bits[m], side="right")
    return out


def titles(d: Draws, name: str, idx: U64, script: I64, count: I64) -> list[str]:
    """Titles of ``count[i]`` Zipf words; word j of title i is drawn at (name + j, idx[i])."""
    words = all_words().words
    word_idx = np.zeros((len(idx), int(count.max(initial=1))), dtype=np.int64)
    for j in range(word_idx.shape[1]):
        rows = np.flatnonzero(count > j)  # draw only the words a title has
        word_idx[rows, j] = draw_words(d, f"{name}{j}", idx[rows], script[rows])
    out = np.empty(len(count), dtype=object)
    for n in range(1, word_idx.shape[1] + 1):
        rows = np.flatnonzero(count == n)
        if len(rows):
            cols = [words[word_idx[rows, c]].tolist() for c in range(n)]
            out[rows] = [" ".join(t) for t in zip(*cols, strict=True)]
    result: list[str] = out.tolist()
    return result
