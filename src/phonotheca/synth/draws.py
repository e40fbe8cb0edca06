"""Counter-based random draws: every value is a function of (seed, stream name, index).

A draw hashes its index with SplitMix64 instead of advancing a sequential random
stream, so the synthetic catalog's bytes do not depend on how the work is chunked.
Per-value arithmetic uses only IEEE basic operations (+ - * / floor) and lookup
tables; ``exp`` and the normal quantile come from tables built with Python's
``math``, so a NumPy SIMD code path cannot change a digit on another machine.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from functools import cache

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NORMAL_CELLS = 1 << 14
_EXP_LO, _EXP_HI, _EXP_STEPS = -40, 40, 256


def _mix(x: U64) -> U64:
    """SplitMix64 finaliser, in place."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@cache
def _normal_quantiles() -> F64:
    """The standard normal quantile at j / CELLS (ends pulled in to stay finite)."""
    nd = statistics.NormalDist()
    cells = _NORMAL_CELLS
    return np.array(
        [nd.inv_cdf(min(max(j, 0.25), cells - 0.25) / cells) for j in range(cells + 1)],
        dtype=np.float64,
    )


@cache
def _exp_table() -> F64:
    n = (_EXP_HI - _EXP_LO) * _EXP_STEPS
    return np.array([math.exp(_EXP_LO + k / _EXP_STEPS) for k in range(n + 1)], np.float64)


def exp(x: F64) -> F64:
    """``exp`` from a table and a cubic Taylor step: the same bits on every machine."""
    t = (np.clip(x, _EXP_LO, _EXP_HI - 1) - _EXP_LO) * _EXP_STEPS
    k = np.floor(t)
    f = (t - k) / _EXP_STEPS
    return _exp_table()[k.astype(np.int64)] * (1.0 + f * (1.0 + f * (0.5 + f / 6.0)))


def log2(x: F64) -> F64:
    """A piecewise-linear log2 (exact arithmetic via frexp); x >= 1."""
    m, e = np.frexp(x)
    return (e - 1).astype(np.float64) + (m - 0.5) * 2.0


class Draws:
    """Independent uniform streams, each addressed by (seed, name, index)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._keys: dict[str, np.uint64] = {}

    def key(self, name: str) -> np.uint64:
        k = self._keys.get(name)
        if k is None:
            digest = hashlib.blake2b(f"{self.seed}\x1f{name}".encode(), digest_size=8).digest()
            k = self._keys[name] = np.uint64(int.from_bytes(digest, "little"))
        return k

    def bits(self, name: str, idx: U64) -> U64:
        x = idx * _GOLDEN
        x += self.key(name)
        return _mix(x)

    def unit(self, name: str, idx: U64) -> F64:
        """Uniform in (0, 1), 52 bits."""
        return ((self.bits(name, idx) >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52

    def below(self, name: str, idx: U64, n: int | U64) -> I64:
        """Uniform integers in [0, n), n < 2**32 (scalar or per index)."""
        hi = self.bits(name, idx) >> np.uint64(32)
        return ((hi * np.asarray(n, dtype=np.uint64)) >> np.uint64(32)).astype(np.int64)

    def chance(self, name: str, idx: U64, p: float | F64) -> Mask:
        return self.unit(name, idx) < p

    def choice(self, name: str, idx: U64, weights: Sequence[float]) -> I64:
        """Index into ``weights`` drawn with those weights."""
        total = sum(weights)
        acc, cuts = 0.0, []
        for w in weights[:-1]:
            acc += w
            cuts.append(min(int(acc / total * 2.0**64), 2**64 - 1))
        thresholds = np.array(cuts, dtype=np.uint64)
        return np.searchsorted(thresholds, self.bits(name, idx), side="right").astype(np.int64)

    def normal(self, name: str, idx: U64) -> F64:
        q = _normal_quantiles()
        t = self.unit(name, idx) * _NORMAL_CELLS
        j = np.floor(t)
        f = t - j
        ji = j.astype(np.int64)
        return q[ji] + f * (q[ji + 1] - q[ji])

    def zipf_pick(self, name: str, idx: U64, pool: U64) -> I64:
        """An artist-like index in [1, pool]: 60 % power law (p ~ r^-1/2), 40 % uniform."""
        u = self.unit(name, idx)
        x = np.where(self.chance(name + ".power", idx, 0.6), u * u, u)
        pool_f = pool.astype(np.float64)
        r = np.minimum(np.floor(x * pool_f), pool_f - 1.0)
        return r.astype(np.int64) + 1
