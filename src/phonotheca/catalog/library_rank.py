"""Positions in the library file's lists that survive inserts: a tree of counts.

A list (an "order": ``song_order``, ``album_order`` or ``artist_order`` rows of one
library and kind) is kept sorted by its primary key, which *is* the sort key of the
list (a genre id then a track id; a title without case then an album id; ...). A page
at offset ``r`` needs the row of rank ``r`` without counting the ``r`` rows before it,
and an insert in the middle must not renumber the rows after it. So the rows of an order
are cut in **blocks**, runs of consecutive rows (a full build makes them of
:data:`BLOCK` rows, an insert lets one grow to twice that before it is cut), each row
knowing its block (``blk``) and its rank in it (``slot``, dense from 0; index ``(lib,
kind, blk, slot)``); and above them a B-tree of counts in ``nodes``:

- a node of level 1 is a block; a node of level ``l + 1`` has up to ``2 * FANOUT``
  nodes of level ``l`` (a full build: :data:`FANOUT`), a run of consecutive ones;
- each node records its rows (``n``), its parent, and ``start``: the rows of the nodes
  before it under the same parent (for the top level, whose parent is -1, before it in
  the order); ``first_blk``: the block of its first row, by which nodes are ordered.

The row of rank ``r``: at each level from the top, the child with the largest ``start``
not past what is left of ``r`` (one index seek of ``(what, lib, kind, level, parent,
start)``), then the slot: ``log_FANOUT(n / BLOCK) + 1`` seeks, then a page is a range
of the primary key from that row. The rank of a row sums the starts on its way up.

Changing ``k`` rows renumbers the blocks they fall in (O(BLOCK) each), then each node
above them again (its children's starts, O(FANOUT) each) up to the top (O(FANOUT)):
O(k * (BLOCK + FANOUT * levels)) rows read, and only the slots and starts that moved
written, whatever the order's length. A block past ``2 *
BLOCK`` rows is cut in blocks of ``BLOCK``, a node past ``2 * FANOUT`` children in
nodes of ``FANOUT``, a top level past ``2 * FANOUT`` nodes gets a level above; an
empty block or node is dropped (nothing is merged: a full build packs them again).

Which block a new row joins: its predecessor's in the order as it was (or the first
block, for a row before all others), so each block stays a run of the order, and each
node a run of blocks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

BLOCK = 32
"""Rows a full build puts in each block; a block is cut when it passes twice this."""
FANOUT = 64
"""Children a full build gives each node; a node is cut when it passes twice this."""
TOP = -1
"""``parent`` of the nodes of the top level."""


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

    @property
    def by_item(self) -> str:
        """The table read by its index of items (all the rows of some items)."""
        return f"{self.table} INDEXED BY {self.table}_item"

    @property
    def ranked(self) -> str:
        """The table read by its index of positions ``(lib, kind, blk, slot)``."""
        return f"{self.table} INDEXED BY {self.table}_rank"

    def prefixed(self, alias: str, descending: bool = False) -> str:
        suffix = " DESC" if descending else ""
        return ", ".join(f"{alias}.{c}{suffix}" for c in self.sort)


DDL = """
CREATE TABLE nodes(
    what INTEGER NOT NULL, lib INTEGER NOT NULL, kind INTEGER NOT NULL, level INTEGER NOT NULL,
    id INTEGER NOT NULL, parent INTEGER NOT NULL, n INTEGER NOT NULL, start INTEGER NOT NULL,
    first_blk INTEGER NOT NULL,
    PRIMARY KEY(what, lib, kind, level, id)) WITHOUT ROWID;
CREATE INDEX nodes_rank ON nodes(what, lib, kind, level, parent, start);
"""


def number(conn: sqlite3.Connection, order: Order, lib: int, kinds: Sequence[int]) -> None:
    """The tree of orders whose rows were just written with ``blk = rank / BLOCK`` and
    ``slot = rank % BLOCK`` (a full build): full blocks, full nodes."""
    for kind in kinds:
        w = (order.what, lib, kind)
        conn.execute(
            f"INSERT INTO nodes SELECT ?, ?, ?, 1, blk, blk / {FANOUT}, count(*),"
            f" (blk % {FANOUT}) * {BLOCK}, blk FROM {order.table} WHERE lib = ? AND kind = ?"
            " GROUP BY blk",
            (*w, lib, kind),
        )
        level, span = 1, BLOCK  # rows under a full node of ``level``
        while True:
            (count,) = conn.execute(
                "SELECT count(*) FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = ?",
                (*w, level),
            ).fetchone()
            if count <= 2 * FANOUT:
                conn.execute(
                    f"UPDATE nodes SET parent = {TOP}, start = id * ? WHERE what = ? AND lib = ?"
                    " AND kind = ? AND level = ?",
                    (span, *w, level),
                )
                break
            conn.execute(
                f"INSERT INTO nodes SELECT what, lib, kind, level + 1, parent, parent / {FANOUT},"
                f" sum(n), (parent % {FANOUT}) * ?, min(first_blk) FROM nodes"
                " WHERE what = ? AND lib = ? AND kind = ? AND level = ? GROUP BY parent",
                (span * FANOUT, *w, level),
            )
            level, span = level + 1, span * FANOUT


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


def _top(conn: sqlite3.Connection, w: tuple[int, int, int]) -> int:
    """The top level of an order's tree (0: no rows)."""
    row = conn.execute(
        "SELECT max(level) FROM nodes WHERE what = ? AND lib = ? AND kind = ?", w
    ).fetchone()
    return int(row[0] or 0)


def total(conn: sqlite3.Connection, order: Order, lib: int, kind: int) -> int:
    """Rows of an order: the sum over its top level."""
    w = (order.what, lib, kind)
    row = conn.execute(
        "SELECT sum(n) FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = ?",
        (*w, _top(conn, w)),
    ).fetchone()
    return int(row[0] or 0)


def row_at(
    conn: sqlite3.Connection, order: Order, lib: int, kind: int, rank: int
) -> tuple[object, ...] | None:
    """Sort columns of the row of ``rank`` (0-based) in an order, or None past its end:
    one index seek per level of its tree, then one for the row."""
    if rank < 0:
        return None
    w = (order.what, lib, kind)
    parent, left = TOP, rank
    for level in range(_top(conn, w), 0, -1):
        found = conn.execute(
            "SELECT id, start FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = ?"
            " AND parent = ? AND start <= ? ORDER BY start DESC LIMIT 1",
            (*w, level, parent, left),
        ).fetchone()
        if found is None:
            return None
        parent, left = int(found[0]), left - int(found[1])
    if parent == TOP:
        return None
    row: tuple[object, ...] | None = conn.execute(
        f"SELECT {order.cols} FROM {order.ranked} WHERE lib = ? AND kind = ? AND blk = ?"
        " AND slot = ?",
        (lib, kind, parent, left),
    ).fetchone()
    return row


def rank_of_key(conn: sqlite3.Connection, order: Order, lib: int, kind: int, key: object) -> int:
    """Rank of the first row whose ``key`` is at least ``key`` (the order's length when
    there is none): one seek of the primary key, then the starts on its way up."""
    row = conn.execute(
        f"SELECT blk, slot FROM {order.table} WHERE lib = ? AND kind = ? AND key >= ?"
        f" ORDER BY {order.cols} LIMIT 1",
        (lib, kind, key),
    ).fetchone()
    if row is None:
        return total(conn, order, lib, kind)
    w = (order.what, lib, kind)
    node, rank, level = int(row[0]), int(row[1]), 1
    while node != TOP:
        parent, start = conn.execute(
            "SELECT parent, start FROM nodes WHERE what = ? AND lib = ? AND kind = ?"
            " AND level = ? AND id = ?",
            (*w, level, node),
        ).fetchone()
        node, rank, level = int(parent), rank + int(start), level + 1
    return rank


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

Where = tuple[int, int, int]
"""(what, lib, kind): one order."""
Child = tuple[int, int, int, int, int]
"""(id, n, first_blk, parent, start) of a node."""


def _fresh(conn: sqlite3.Connection, w: Where, level: int) -> int:
    row = conn.execute(
        "SELECT coalesce(max(id), -1) + 1 FROM nodes WHERE what = ? AND lib = ? AND kind = ?"
        " AND level = ?",
        (*w, level),
    ).fetchone()
    return int(row[0])


def begin(conn: sqlite3.Connection) -> None:
    """An empty ``temp.touched``: the blocks whose rows change (see :func:`settle`)."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS touched(what INTEGER, lib INTEGER, kind INTEGER,"
        " blk INTEGER, PRIMARY KEY(what, lib, kind, blk)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.touched")


def touch_rows(conn: sqlite3.Connection, order: Order, items: str, libs: str = "1, 2") -> None:
    """Record in ``temp.touched`` the blocks of the rows of the items of ``items`` (a
    query of item ids) in the libraries ``libs`` (a list of ids), before they are
    deleted."""
    conn.execute(
        f"INSERT OR IGNORE INTO temp.touched SELECT DISTINCT {order.what}, lib, kind, blk"
        f" FROM {order.by_item} WHERE {order.item} IN ({items}) AND lib IN ({libs})"
    )


def place(conn: sqlite3.Connection, order: Order, lib: int, kind: int) -> None:
    """Give the rows of an order inserted with ``blk`` NULL a block: their predecessor's
    among the placed rows, else the first block, else (no placed row) a block of the
    order or a new one. Their blocks are recorded in ``temp.touched``."""
    t, w = order.table, (order.what, lib, kind)
    rows = conn.execute(
        f"SELECT {order.cols} FROM {order.ranked} WHERE lib = ? AND kind = ? AND blk IS NULL",
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
    if first is None:  # every row went: any block of the order (emptied), else a new one
        first = conn.execute(
            "SELECT id FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = 1 LIMIT 1",
            w,
        ).fetchone()
    if first is None:
        blk = _fresh(conn, w, 1)
        conn.execute("INSERT INTO nodes VALUES(?, ?, ?, 1, ?, ?, 0, 0, ?)", (*w, blk, TOP, blk))
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


def settle(conn: sqlite3.Connection, orders: Sequence[Order]) -> None:
    """Renumber the blocks of ``temp.touched``, then each node above them, level by
    level, up to the top."""
    for order in orders:
        lists = conn.execute(
            "SELECT DISTINCT lib, kind FROM temp.touched WHERE what = ?", (order.what,)
        ).fetchall()
        for lib, kind in lists:
            w = (order.what, int(lib), int(kind))
            blocks = [
                int(r[0])
                for r in conn.execute(
                    "SELECT blk FROM temp.touched WHERE what = ? AND lib = ? AND kind = ?", w
                )
            ]
            parents = {_renumber(conn, order, w, blk) for blk in blocks}
            for level in range(2, _top(conn, w) + 1):
                parents = {p if p == TOP else _regroup(conn, order, w, level, p) for p in parents}
            _restart(conn, order, w)
    conn.execute("DELETE FROM temp.touched")


def _node(conn: sqlite3.Connection, w: Where, level: int, ident: int) -> int | None:
    """The parent of a node, None when there is no such node."""
    row = conn.execute(
        "SELECT parent FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = ? AND id = ?",
        (*w, level, ident),
    ).fetchone()
    return None if row is None else int(row[0])


def _renumber(conn: sqlite3.Connection, order: Order, w: Where, blk: int) -> int:
    """Slots of one block again from its rows' order; cut in blocks of :data:`BLOCK` when
    it passed ``2 * BLOCK``; dropped when empty. Its parent."""
    _, lib, kind = w
    parent = _node(conn, w, 1, blk)
    if parent is None:
        return TOP
    rows = conn.execute(
        f"SELECT slot, {order.cols} FROM {order.ranked} WHERE lib = ? AND kind = ? AND blk = ?"
        f" ORDER BY {order.cols}",
        (lib, kind, blk),
    ).fetchall()
    n = len(rows)
    if n == 0:
        conn.execute(
            "DELETE FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = 1 AND id = ?",
            (*w, blk),
        )
        return parent
    cut = n > 2 * BLOCK
    base = _fresh(conn, w, 1) - 1 if cut else 0
    where = " AND ".join(f"{c} = ?" for c in order.sort)
    changes = []
    for rank, (slot, *key) in enumerate(rows):
        spot = (
            base + rank // BLOCK if cut and rank >= BLOCK else blk,
            rank % BLOCK if cut else rank,
        )
        if cut or slot != spot[1]:
            changes.append((*spot, lib, kind, *key))
    conn.executemany(
        f"UPDATE {order.table} SET blk = ?, slot = ? WHERE lib = ? AND kind = ? AND {where}",
        changes,
    )
    conn.execute(
        "UPDATE nodes SET n = ? WHERE what = ? AND lib = ? AND kind = ? AND level = 1 AND id = ?",
        (min(n, BLOCK) if cut else n, *w, blk),
    )
    if cut:
        conn.executemany(
            "INSERT INTO nodes VALUES(?, ?, ?, 1, ?, ?, ?, 0, ?)",
            [
                (*w, base + part, parent, min(BLOCK, n - part * BLOCK), base + part)
                for part in range(1, (n + BLOCK - 1) // BLOCK)
            ],
        )
    return parent


def _children(
    conn: sqlite3.Connection, order: Order, w: Where, level: int, parent: int
) -> list[Child]:
    """The nodes of ``level`` under ``parent``, in the order of their first rows."""
    return [
        (int(a), int(b), int(c), int(d), int(e))
        for a, b, c, d, e in conn.execute(
            f"SELECT x.id, x.n, x.first_blk, x.parent, x.start FROM nodes x"
            f" CROSS JOIN {order.table} o"
            f" INDEXED BY {order.table}_rank"
            " WHERE x.what = ? AND x.lib = ? AND x.kind = ? AND x.level = ? AND x.parent = ?"
            " AND o.lib = x.lib AND o.kind = x.kind AND o.blk = x.first_blk AND o.slot = 0"
            f" ORDER BY {order.prefixed('o')}",
            (*w, level, parent),
        )
    ]


def _regroup(conn: sqlite3.Connection, order: Order, w: Where, level: int, ident: int) -> int:
    """Starts of a node's children again (it is of ``level``); cut in nodes of
    :data:`FANOUT` children when it has more than ``2 * FANOUT``; dropped when it has
    none. Its parent."""
    parent = _node(conn, w, level, ident)
    if parent is None:
        return TOP
    children = _children(conn, order, w, level - 1, ident)
    if not children:
        conn.execute(
            "DELETE FROM nodes WHERE what = ? AND lib = ? AND kind = ? AND level = ? AND id = ?",
            (*w, level, ident),
        )
        return parent
    parts = [children]
    if len(children) > 2 * FANOUT:
        parts = [children[i : i + FANOUT] for i in range(0, len(children), FANOUT)]
    fresh = _fresh(conn, w, level) if len(parts) > 1 else 0
    for i, part in enumerate(parts):
        node = ident if i == 0 else fresh + i - 1
        _adopt(conn, w, level, node, parent, part, 0)
    return parent


def _adopt(
    conn: sqlite3.Connection,
    w: Where,
    level: int,
    node: int,
    parent: int,
    children: list[Child],
    start: int,
) -> int:
    """Node ``node`` of ``level`` (made or changed) over ``children`` in order; its rows."""
    starts = [0, *accumulate(c[1] for c in children)]
    conn.executemany(
        "UPDATE nodes SET parent = ?, start = ? WHERE what = ? AND lib = ? AND kind = ?"
        " AND level = ? AND id = ?",
        [
            (node, starts[j], *w, level - 1, c[0])
            for j, c in enumerate(children)
            if (c[3], c[4]) != (node, starts[j])
        ],
    )
    conn.execute(
        "INSERT INTO nodes VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
        " SET parent = excluded.parent, n = excluded.n, start = excluded.start,"
        " first_blk = excluded.first_blk",
        (*w, level, node, parent, starts[-1], start, children[0][2]),
    )
    return starts[-1]


def _restart(conn: sqlite3.Connection, order: Order, w: Where) -> None:
    """Starts of the top level again; a level above it when it has more than ``2 *
    FANOUT`` nodes."""
    top = _top(conn, w)
    if top == 0:
        return
    nodes = _children(conn, order, w, top, TOP)
    if len(nodes) <= 2 * FANOUT:
        starts = [0, *accumulate(c[1] for c in nodes)]
        conn.executemany(
            "UPDATE nodes SET start = ? WHERE what = ? AND lib = ? AND kind = ? AND level = ?"
            " AND id = ?",
            [(starts[j], *w, top, c[0]) for j, c in enumerate(nodes) if c[4] != starts[j]],
        )
        return
    start = 0
    for i in range(0, len(nodes), FANOUT):
        start += _adopt(conn, w, top + 1, i // FANOUT, TOP, nodes[i : i + FANOUT], start)
