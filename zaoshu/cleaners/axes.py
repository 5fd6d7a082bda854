"""The axis guard of near-dup: two texts that each name an axis value the other lacks are not merged.

Per axis, each row gets the id of the set of values its key names (0: none), so memory is one integer
per row and axis whatever the number of values (a name axis has thousands). Most rows name at most one
value; pairs of different sets are compared as sets once per distinct pair of ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class AxisSets:
    ids: np.ndarray  # rows × axes, int32: the id of the set of values the row names (0: none)
    sets: list[list[frozenset[int]]]  # per axis: id -> the set of value indices (id 0: empty)


def axis_sets(keys: pl.Series, values: dict[str, list[str]]) -> AxisSets:
    """Which values of each axis (values of 2+ characters) every key names, as set ids."""
    rows = pl.DataFrame({"k": keys}).with_row_index("r")
    ids = np.zeros((len(keys), max(len(values), 1)), dtype=np.int32)
    sets: list[list[frozenset[int]]] = []
    for col, names in enumerate(values.values()):
        names = sorted({v for v in names if len(v) >= 2})
        table: list[frozenset[int]] = [frozenset()]
        sets.append(table)
        if not names:
            continue
        index = {v: i for i, v in enumerate(names)}
        found = (
            rows.select("r", pl.col("k").str.extract_many(names, overlapping=True).alias("v"))
            .explode("v")
            .drop_nulls("v")
            .select("r", pl.col("v").replace_strict(index, return_dtype=pl.UInt32).alias("i"))
            .unique()
            .group_by("r")
            .agg(pl.col("i").sort())
            .with_columns(s=pl.col("i").list.eval(pl.element().cast(pl.Utf8)).list.join(","))
        )
        if not found.height:
            continue
        distinct = found.select("s", "i").unique("s").sort("s").with_row_index("id", offset=1)
        table.extend(frozenset(v) for v in distinct["i"].to_list())
        named = found.select("r", "s").join(distinct.select("s", "id"), on="s", how="left")
        ids[named["r"].to_numpy(), col] = named["id"].to_numpy()
    return AxisSets(ids, sets)


def _apart(x: frozenset[int], y: frozenset[int]) -> bool:
    return bool(x - y) and bool(y - x)


def conflicts(axes: AxisSets, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True where rows a and b each name a value of some axis that the other lacks."""
    out = np.zeros(len(a), dtype=bool)
    for col, table in enumerate(axes.sets):
        ia, ib = axes.ids[a, col], axes.ids[b, col]
        maybe = np.flatnonzero((ia != 0) & (ib != 0) & (ia != ib))
        if not len(maybe):
            continue
        pairs = np.unique(np.stack([ia[maybe], ib[maybe]], axis=1), axis=0)
        bad = {(int(x), int(y)) for x, y in pairs if _apart(table[x], table[y])}
        if bad:
            out[maybe] |= np.fromiter(
                ((int(x), int(y)) in bad for x, y in zip(ia[maybe], ib[maybe], strict=True)),
                dtype=bool,
                count=len(maybe),
            )
    return out


def split_conflicts(head: np.ndarray, axes: AxisSets) -> np.ndarray:
    """Split clusters whose members name different values of an axis (姐姐… ~ 祝你… ~ 妹妹…, chained
    through a text naming neither): in row order, each member joins the first group whose named values
    it does not conflict with, or starts a group (and stays)."""
    n = len(head)
    if not (head != np.arange(n)).any():
        return head
    frame = pl.DataFrame({"h": head, "i": np.arange(n)})
    suspicious: set[int] = set()
    for col in range(len(axes.sets)):
        named = frame.with_columns(s=axes.ids[:, col]).filter(pl.col("s") != 0)
        distinct = named.group_by("h").agg(pl.col("s").n_unique().alias("u")).filter(pl.col("u") > 1)
        suspicious.update(distinct["h"].to_list())
    if not suspicious:
        return head
    head = head.copy()
    groups = frame.filter(pl.col("h").is_in(sorted(suspicious))).group_by("h").agg(pl.col("i").sort())
    for members in groups["i"].to_list():
        heads: list[int] = []
        named_values: list[list[frozenset[int]]] = []
        for r in members:
            mine = [table[axes.ids[r, col]] for col, table in enumerate(axes.sets)]
            for g, theirs in enumerate(named_values):
                if not any(_apart(m, u) for m, u in zip(mine, theirs, strict=True)):
                    head[r] = heads[g]
                    named_values[g] = [m | u for m, u in zip(mine, theirs, strict=True)]
                    break
            else:
                head[r] = r
                heads.append(r)
                named_values.append(mine)
    return head
