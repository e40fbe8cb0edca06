"""Two SHA-256 digests in one pass: the same digests as hashlib, however the bytes come."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonotheca import sha256pair

DATA = bytes(range(256)) * 1200  # 300 KiB: some updates pass the size that frees the GIL


def cpu_has_sha_extensions() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or not cpuinfo.exists():
        return False
    return any(
        line.startswith("flags") and "sha_ni" in line.split()
        for line in cpuinfo.read_text().splitlines()
    )


@pytest.fixture(params=[True, False], ids=["paired", "hashlib"])
def paired(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not sha256pair.PAIRED:
        pytest.skip("the compiled module is not available on this machine")
    monkeypatch.setattr(sha256pair, "PAIRED", request.param)
    return bool(request.param)


def test_the_compiled_module_is_built_where_the_cpu_has_sha_extensions() -> None:
    """An install that silently skipped the C module would hash twice as slowly."""
    if not cpu_has_sha_extensions():
        pytest.skip("this CPU has no SHA extensions")
    assert sha256pair.PAIRED


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # monkeypatched once per run
)
@given(
    head=st.integers(0, 200),
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 140_000)),
        max_size=8,
    ),
)
def test_same_digests_as_hashlib(paired: bool, head: int, steps: list[tuple[bool, int]]) -> None:
    """``b`` starts ``head`` bytes ahead (off a block boundary unless a multiple of 64);
    each step feeds both, or ``a`` alone, so either may stand anywhere in a block."""
    a, b = sha256pair.sha256(), sha256pair.sha256()
    ref_a, ref_b = hashlib.sha256(), hashlib.sha256()
    b.update(DATA[:head])
    ref_b.update(DATA[:head])
    pos = head
    for both, n in steps:
        chunk = memoryview(DATA)[pos % 1000 : pos % 1000 + n]
        pos += n
        if both:
            sha256pair.update_both(a, b, chunk)
            ref_b.update(chunk)
        else:
            a.update(chunk)
        ref_a.update(chunk)
    assert a.hexdigest() == ref_a.hexdigest()
    assert b.digest() == ref_b.digest()
    assert a.hexdigest() == ref_a.hexdigest(), "a digest does not change the state"


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 65_536, 300_000])
def test_padding_at_every_boundary(paired: bool, length: int) -> None:
    a, b = sha256pair.sha256(), sha256pair.sha256()
    sha256pair.update_both(a, b, DATA[:length])
    expected = hashlib.sha256(DATA[:length]).hexdigest()
    assert (a.hexdigest(), b.hexdigest()) == (expected, expected)


def test_strings_are_refused() -> None:
    with pytest.raises(TypeError):
        sha256pair.sha256().update("text")  # type: ignore[arg-type]
