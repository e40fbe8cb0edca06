"""Blocks of lines as the importers read them: split a read at a time (no Python per
line), they are exactly the blocks read one line at a time."""

from __future__ import annotations

import io
import random
from typing import cast

import pytest

from phonotheca.sources import jsonl
from phonotheca.sources.compressed import InputStream


class _Stream(io.BytesIO):
    position = 0  # what the blocks report as input read; not under test here


def _by_lines(
    data: bytes, per_block: int, skip: int, max_line: int, max_block: int
) -> list[tuple[int, list[bytes]]]:
    """The same, one line at a time (as the importers read before): a read's last,
    unfinished line that is already longer than ``max_line`` is cut just past it and
    the rest of it skipped; the first ``skip`` lines left out; a block ends after
    ``per_block`` lines or once it holds ``max_block`` bytes."""
    lines: list[bytes] = []
    tail, overlong = b"", False
    for start in range(0, len(data), jsonl.BLOCK):
        read = data[start : start + jsonl.BLOCK]
        parts = read.split(b"\n") if overlong else (tail + read).split(b"\n")
        if overlong:
            if len(parts) == 1:
                continue
            del parts[0]
            overlong = False
        tail = parts.pop()
        if len(tail) > max_line:
            parts.append(tail[: max_line + 1])
            tail, overlong = b"", True
        lines += parts
    if tail:
        lines.append(tail)
    blocks: list[tuple[int, list[bytes]]] = []
    pending: list[bytes] = []
    size = 0
    for number, line in enumerate(lines, 1):
        if number <= skip:
            continue
        pending.append(line)
        size += len(line)
        if len(pending) >= per_block or size >= max_block:
            blocks.append((number - len(pending) + 1, pending))
            pending, size = [], 0
    if pending:
        blocks.append((len(lines) - len(pending) + 1, pending))
    return blocks


@pytest.mark.parametrize("seed", range(4))
def test_blocks_equal_those_read_line_by_line(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(jsonl, "BLOCK", 64)  # lines and blocks straddle the reads
    rng = random.Random(seed)
    for _ in range(500):
        lengths = [rng.choice([0, 1, 5, 30, 100, 300]) for _ in range(rng.randint(0, 60))]
        data = b"\n".join(bytes(rng.choice(b"ab") for _ in range(n)) for n in lengths)
        if rng.random() < 0.5:
            data += b"\n"
        per_block, skip = rng.randint(1, 10), rng.randint(0, 20)
        max_line, max_block = rng.choice([10, 50, 1000]), rng.choice([1 << 62, 20, 100])
        got = [
            (first, lines)
            for first, lines, _ in jsonl.line_blocks(
                _Stream(data), cast(InputStream, _Stream()), per_block, skip, max_line, max_block
            )
        ]
        assert got == _by_lines(data, per_block, skip, max_line, max_block)
