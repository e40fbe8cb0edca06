"""Positions in the library file's lists that survive inserts: counts per block of rows.

A list (an "order": ``song_order``, ``album_order`` or ``artist_order`` rows of one
library and kind) is kept sorted by its primary key, which *is* the sort key of the
list (a genre id then a track id; a title without case then an album id; ...). A page
at offset ``r`` needs the row of rank ``r`` without counting the ``r`` rows before it,
and an insert in the middle must not renumber the rows after it. So each row also
carries a block and a slot:

- a **block** is a run of consecutive rows of an order (at most :data:`BLOCK` * 2, a
  full build fills them with :data:`BLOCK`); ``slot`` is the row's rank within its
  block, dense from 0 (index ``(lib, kind, blk, slot)``);
- a **group** is a run of consecutive blocks (at most :data:`GROUP` * 2); each block
  records its rows (``n``) and the rows of the blocks before it in its group
  (``start``);
- each group records its rows and the rows of the groups before it (``start``): the
  top level, ``n / (BLOCK * GROUP)`` rows per order (256 at 256 M rows).

The row of rank ``r``: the group with the largest ``start <= r``, in it the block with
the largest ``start <= r - group.start``, in it the slot: three index seeks, then the
page is a range of the primary key from that row. Changing ``k`` rows renumbers the
blocks they touch (O(k * BLOCK)), the starts of the blocks of the groups those are in
(O(GROUP) per group), and the starts of every group (O(n / (BLOCK * GROUP))): never a
cost in proportion to the list. A block that grows past ``2 * BLOCK`` rows is cut into
blocks of ``BLOCK``; a group past ``2 * GROUP`` blocks into groups of ``GROUP``; an
empty block or group is dropped (blocks are not merged: a full build packs them).

Which block a new row joins: its predecessor's in the order as it was (or the first
block, for a row before all others), so each block stays a run of the order. Blocks
and groups are kept in order by their first rows (slot 0), compared on the primary key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

BLOCK = 1024
"""Rows a full build puts in each block; a block is cut when it passes twice this."""
GROUP = 1024
"""Blocks a full build puts in each group; a group is cut when it passes twice this."""


@dataclass(frozen=True)
class Order:
    """One table of lists: its rows' sort columns (after ``lib, kind``; the item last)."""

    what: int
    table: str
    item: str
    sort: tuple[str, ...]

    @property
    def cols(self) -> str:
        return ", ".join(self.sort)

    def prefixed(self, alias: str, descending: bool = False) -> str:
        suffix = " DESC" if descending else ""
        return ", ".join(f"{alias}.{c}{suffix}" for c in self.sort)


DDL = """
CREATE TABLE blocks(
    what INTEGER NOT NULL, lib INTEGER NOT NULL, kind INTEGER NOT NULL, blk INTEGER NOT NULL,
    grp INTEGER NOT NULL, n INTEGER NOT NULL, start INTEGER NOT NULL,
    PRIMARY KEY(what, lib, kind, blk)) WITHOUT ROWID;
CREATE INDEX blocks_rank ON blocks(what, lib, kind, grp, start);
CREATE TABLE groups(
    what INTEGER NOT NULL, lib INTEGER NOT NULL, kind INTEGER NOT NULL, grp INTEGER NOT NULL,
    n INTEGER NOT NULL, start INTEGER NOT NULL, first_blk INTEGER NOT NULL,
    PRIMARY KEY(what, lib, kind, grp)) WITHOUT ROWID;
CREATE INDEX groups_rank ON groups(what, lib, kind, start);
"""


def number(conn: sqlite3.Connection, order: Order, lib: int, kinds: Sequence[int]) -> None:
    """Blocks and groups of orders whose rows were just written with ``blk = rank /
    BLOCK`` and ``slot = rank % BLOCK`` (a full build): full blocks, full groups."""
    for kind in kinds:
        args = (order.what, lib, kind)
        conn.execute(
            f"INSERT INTO blocks SELECT ?, ?, ?, blk, blk / {GROUP}, count(*),"
            f" (blk % {GROUP}) * {BLOCK} FROM {order.table} WHERE lib = ? AND kind = ?"
            " GROUP BY blk",
            (*args, lib, kind),
        )
        conn.execute(
            f"INSERT INTO groups SELECT what, lib, kind, grp, sum(n), grp * {GROUP * BLOCK},"
            " min(blk) FROM blocks WHERE what = ? AND lib = ? AND kind = ? GROUP BY grp",
            args,
        )


def ranked(order: Order, source: str) -> str:
    """Columns ``blk, slot`` for the rows of ``source`` (rows of one library and kind, with
    the order's sort columns), numbered in the order's sort (a full build)."""
    rank = f"row_number() OVER (ORDER BY {_collated(order)}) - 1"
    return (
        f"SELECT *, r / {BLOCK} AS blk, r % {BLOCK} AS slot FROM"
        f" (SELECT *, {rank} AS r FROM ({source}))"
    )


def _collated(order: Order) -> str:
    """The sort of an order in a query outside its table (where the columns' collations
    are not known): the album titles' without case."""
    return ", ".join(
        f"{c} COLLATE NOCASE" if order.table == "album_order" and c in ("t1", "t2") else c
        for c in order.sort
    )


# -- reading ------------------------------------------------------------------------------


def total(conn: sqlite3.Connection, order: Order, lib: int, kind: int) -> int:
    """Rows of an order: the sum over its groups (the top level)."""
    row = conn.execute(
        "SELECT sum(n) FROM groups WHERE what = ? AND lib = ? AND kind = ?",
        (order.what, lib, kind),
    ).fetchone()
    return int(row[0] or 0)


def row_at(
    conn: sqlite3.Connection, order: Order, lib: int, kind: int, rank: int
) -> tuple[object, ...] | None:
    """Sort columns of the row of ``rank`` (0-based) in an order, or None past its end:
    three index seeks."""
    if rank < 0:
        return None
    row: tuple[object, ...] | None = conn.execute(
        f"""WITH g AS (SELECT grp, start FROM groups
                       WHERE what = :w AND lib = :l AND kind = :k AND start <= :r
                       ORDER BY start DESC LIMIT 1),
                 b AS (SELECT b.blk, g.start + b.start AS s FROM g CROSS JOIN blocks b
                       WHERE b.what = :w AND b.lib = :l AND b.kind = :k AND b.grp = g.grp
                         AND b.start <= :r - g.start
                       ORDER BY b.start DESC LIMIT 1)
            SELECT {order.prefixed("o")} FROM b CROSS JOIN {order.table} o
            WHERE o.lib = :l AND o.kind = :k AND o.blk = b.blk AND o.slot = :r - b.s""",
        {"w": order.what, "l": lib, "k": kind, "r": rank},
    ).fetchone()
    return row


def rank_of_key(conn: sqlite3.Connection, order: Order, lib: int, kind: int, key: object) -> int:
    """Rank of the first row whose ``key`` is at least ``key`` (the order's length when
    there is none): one seek of the primary key, then its block's and group's starts."""
    row = conn.execute(
        f"""SELECT g.start + b.start + o.slot FROM
                (SELECT blk, slot FROM {order.table} WHERE lib = :l AND kind = :k AND key >= :key
                 ORDER BY {order.cols} LIMIT 1) o
            CROSS JOIN blocks b CROSS JOIN groups g
            WHERE b.what = :w AND b.lib = :l AND b.kind = :k AND b.blk = o.blk
              AND g.what = :w AND g.lib = :l AND g.kind = :k AND g.grp = b.grp""",
        {"w": order.what, "l": lib, "k": kind, "key": key},
    ).fetchone()
    return total(conn, order, lib, kind) if row is None else int(row[0])


def page(
    conn: sqlite3.Connection,
    order: Order,
    lib: int,
    kind: int,
    rank: int,
    size: int,
    descending: bool = False,
) -> list[int]:
    """Items of ranks ``rank`` to ``rank + size - 1`` (descending: ``rank`` down to
    ``rank - size + 1``): the row of ``rank``, then a range of the primary key."""
    if size <= 0:
        return []
    first = row_at(conn, order, lib, kind, rank)
    if first is None:
        return []
    marks = ", ".join("?" * len(order.sort))
    op, direction = ("<=", " DESC") if descending else (">=", "")
    sort = ", ".join(f"{c}{direction}" for c in order.sort)
    rows = conn.execute(
        f"SELECT {order.item} FROM {order.table} WHERE lib = ? AND kind = ?"
        f" AND ({order.cols}) {op} ({marks}) ORDER BY {sort} LIMIT ?",
        (lib, kind, *first, size),
    )
    return [int(r[0]) for r in rows]


# -- changing -----------------------------------------------------------------------------


def _fresh(conn: sqlite3.Connection, table: str, column: str, where: Sequence[int]) -> int:
    row = conn.execute(
        f"SELECT coalesce(max({column}), -1) + 1 FROM {table}"
        " WHERE what = ? AND lib = ? AND kind = ?",
        tuple(where),
    ).fetchone()
    return int(row[0])


def place(conn: sqlite3.Connection, order: Order, lib: int, kind: int) -> None:
    """Give the rows of an order inserted with ``blk`` NULL a block: their predecessor's
    among the placed rows, else the first block, else (an empty order) a new one. Their
    blocks are then recorded in ``temp.touched`` (see :func:`settle`)."""
    t, w = order.table, (order.what, lib, kind)
    rows = conn.execute(
        f"SELECT {order.cols} FROM {t} WHERE lib = ? AND kind = ? AND blk IS NULL",
        (lib, kind),
    ).fetchall()
    if not rows:
        return
    marks = ", ".join("?" * len(order.sort))
    before = (
        f"SELECT blk FROM {t} WHERE lib = ? AND kind = ? AND blk IS NOT NULL"
        f" AND ({order.cols}) < ({marks}) ORDER BY {order.prefixed(t, True)} LIMIT 1"
    )
    first = conn.execute(
        f"SELECT blk FROM {t} WHERE lib = ? AND kind = ? AND blk IS NOT NULL"
        f" ORDER BY {order.cols} LIMIT 1",
        (lib, kind),
    ).fetchone()
    if first is None:
        blk, grp = _fresh(conn, "blocks", "blk", w), _fresh(conn, "groups", "grp", w)
        conn.execute("INSERT INTO blocks VALUES(?, ?, ?, ?, ?, 0, 0)", (*w, blk, grp))
        conn.execute("INSERT INTO groups VALUES(?, ?, ?, ?, 0, 0, ?)", (*w, grp, blk))
        first = (blk,)
    where = " AND ".join(f"{c} = ?" for c in order.sort)
    for row in rows:
        found = conn.execute(before, (lib, kind, *row)).fetchone()
        target = int((found or first)[0])
        conn.execute(
            f"UPDATE {t} SET blk = ?, slot = -1 WHERE lib = ? AND kind = ? AND {where}",
            (target, lib, kind, *row),
        )
        conn.execute("INSERT OR IGNORE INTO temp.touched VALUES(?, ?, ?, ?)", (*w, target))


def touch_rows(conn: sqlite3.Connection, order: Order, items: str) -> None:
    """Record in ``temp.touched`` the blocks of the rows of the items of ``items`` (a
    query of item ids), before they are deleted."""
    conn.execute(
        f"INSERT OR IGNORE INTO temp.touched SELECT DISTINCT {order.what}, lib, kind, blk"
        f" FROM {order.table} WHERE {order.item} IN ({items})"
    )


def begin(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS touched(what INTEGER, lib INTEGER, kind INTEGER,"
        " blk INTEGER, PRIMARY KEY(what, lib, kind, blk)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.touched")


def settle(conn: sqlite3.Connection, orders: Sequence[Order]) -> None:
    """Renumber the blocks of ``temp.touched`` (cutting the large ones), then the starts
    of their groups (cutting the large ones), then the starts of every group of their
    orders."""
    for order in orders:
        lists = conn.execute(
            "SELECT DISTINCT lib, kind FROM temp.touched WHERE what = ?", (order.what,)
        ).fetchall()
        for lib, kind in lists:
            blocks = [
                int(r[0])
                for r in conn.execute(
                    "SELECT blk FROM temp.touched WHERE what = ? AND lib = ? AND kind = ?",
                    (order.what, lib, kind),
                )
            ]
            groups: set[int] = set()
            for blk in blocks:
                groups.update(_renumber(conn, order, lib, kind, blk))
            for grp in sorted(groups):
                _regroup(conn, order, lib, kind, grp)
            _restart(conn, order, lib, kind)
    conn.execute("DELETE FROM temp.touched")


def _renumber(conn: sqlite3.Connection, order: Order, lib: int, kind: int, blk: int) -> set[int]:
    """Slots of one block again from its rows' order; cut into blocks of :data:`BLOCK`
    when it passed ``2 * BLOCK``; dropped when empty. The groups that changed."""
    w = (order.what, lib, kind)
    row = conn.execute(
        "SELECT grp FROM blocks WHERE what = ? AND lib = ? AND kind = ? AND blk = ?", (*w, blk)
    ).fetchone()
    if row is None:
        return set()
    grp = int(row[0])
    (n,) = conn.execute(
        f"SELECT count(*) FROM {order.table} WHERE lib = ? AND kind = ? AND blk = ?",
        (lib, kind, blk),
    ).fetchone()
    if n == 0:
        conn.execute(
            "DELETE FROM blocks WHERE what = ? AND lib = ? AND kind = ? AND blk = ?", (*w, blk)
        )
        return {grp}
    cut = n > 2 * BLOCK
    base = _fresh(conn, "blocks", "blk", w) - 1 if cut else 0
    key = " AND ".join(f"{order.table}.{c} = r.{c}" for c in order.sort)
    conn.execute(
        f"""WITH r AS MATERIALIZED (
                SELECT {order.cols}, row_number() OVER (ORDER BY {order.cols}) - 1 AS rn
                FROM {order.table} WHERE lib = :l AND kind = :k AND blk = :b)
            UPDATE {order.table}
            SET blk = CASE WHEN :cut AND r.rn >= {BLOCK} THEN :base + r.rn / {BLOCK}
                           ELSE :b END,
                slot = CASE WHEN :cut THEN r.rn % {BLOCK} ELSE r.rn END
            FROM r WHERE {order.table}.lib = :l AND {order.table}.kind = :k AND {key}""",
        {"l": lib, "k": kind, "b": blk, "cut": cut, "base": base},
    )
    if not cut:
        conn.execute(
            "UPDATE blocks SET n = ? WHERE what = ? AND lib = ? AND kind = ? AND blk = ?",
            (n, *w, blk),
        )
        return {grp}
    conn.execute(
        f"UPDATE blocks SET n = {BLOCK} WHERE what = ? AND lib = ? AND kind = ? AND blk = ?",
        (*w, blk),
    )
    for part in range(1, (n + BLOCK - 1) // BLOCK):
        size = min(BLOCK, n - part * BLOCK)
        conn.execute("INSERT INTO blocks VALUES(?, ?, ?, ?, ?, ?, 0)", (*w, base + part, grp, size))
    return {grp}


def _in_order(
    conn: sqlite3.Connection,
    order: Order,
    lib: int,
    kind: int,
    table: str,
    first: str,
    grp: int | None = None,
) -> list[tuple[int, int]]:
    """(id, n) of the blocks of group ``grp`` (``table`` "blocks", ``first`` "blk") or of
    every group (``table`` "groups", ``first`` "first_blk"), by their first rows."""
    ident = "blk" if table == "blocks" else "grp"
    where = "" if grp is None else f" AND x.grp = {int(grp)}"
    return [
        (int(a), int(b))
        for a, b in conn.execute(
            f"SELECT x.{ident}, x.n FROM {table} x CROSS JOIN {order.table} o"
            f" WHERE x.what = ? AND x.lib = ? AND x.kind = ?{where}"
            f" AND o.lib = x.lib AND o.kind = x.kind AND o.blk = x.{first} AND o.slot = 0"
            f" ORDER BY {order.prefixed('o')}",
            (order.what, lib, kind),
        )
    ]


def _regroup(conn: sqlite3.Connection, order: Order, lib: int, kind: int, grp: int) -> None:
    """Starts of a group's blocks again; cut into groups of :data:`GROUP` when it has
    more than ``2 * GROUP`` blocks; dropped when it has none."""
    w = (order.what, lib, kind)
    blocks = _in_order(conn, order, lib, kind, "blocks", "blk", grp)
    if not blocks:
        conn.execute(
            "DELETE FROM groups WHERE what = ? AND lib = ? AND kind = ? AND grp = ?", (*w, grp)
        )
        return
    parts = [blocks]
    if len(blocks) > 2 * GROUP:
        parts = [blocks[i : i + GROUP] for i in range(0, len(blocks), GROUP)]
    fresh = _fresh(conn, "groups", "grp", w)
    for i, part in enumerate(parts):
        g = grp if i == 0 else fresh + i - 1
        starts = [0, *accumulate(n for _, n in part)]
        conn.executemany(
            "UPDATE blocks SET grp = ?, start = ? WHERE what = ? AND lib = ? AND kind = ?"
            " AND blk = ?",
            [(g, starts[j], *w, blk) for j, (blk, _) in enumerate(part)],
        )
        conn.execute(
            "INSERT INTO groups VALUES(?, ?, ?, ?, ?, 0, ?) ON CONFLICT DO UPDATE"
            " SET n = excluded.n, first_blk = excluded.first_blk",
            (*w, g, starts[-1], part[0][0]),
        )


def _restart(conn: sqlite3.Connection, order: Order, lib: int, kind: int) -> None:
    """Starts of every group of an order again (the top level: few rows)."""
    groups = _in_order(conn, order, lib, kind, "groups", "first_blk")
    starts = [0, *accumulate(n for _, n in groups)]
    conn.executemany(
        "UPDATE groups SET start = ? WHERE what = ? AND lib = ? AND kind = ? AND grp = ?",
        [(starts[j], order.what, lib, kind, grp) for j, (grp, _) in enumerate(groups)],
    )
