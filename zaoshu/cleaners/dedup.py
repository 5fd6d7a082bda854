"""Exact and near-duplicate removal over dedup keys (NFKC, no punctuation, emoji or spaces).

Exact: rows with the same key; the first keeps. Near (what moved F1 past the peers, MEASURED.md):
1. candidates from datasketch MinHash LSH at a low threshold (batch signatures, `minhash.py`), plus, for
   keys shorter than `short_chars`, pairs that share a one-character deletion;
2. every candidate pair checked exactly: rapidfuzz Indel normalized similarity >= threshold (short keys:
   Levenshtein distance <= 1), vectorized with `process.cpdist`;
3. pairs whose texts each name an axis value the other lacks (姐姐 vs 妹妹, 生日 vs 春节) are refused;
4. union-find over the kept pairs; each cluster keeps its first row (a member that conflicts with the
   cluster's first row on an axis starts its own cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from zaoshu.cleaners.axes import AxisSets, axis_sets, conflicts, split_conflicts
from zaoshu.cleaners.config import NearDupConfig
from zaoshu.cleaners.minhash import bucket_pairs, codepoints, lsh_bands, lsh_params
from zaoshu.cleaners.verify import PASS, UNCHECKED, VETOES, Verifier, script, veto_hashes


@dataclass
class NearDupResult:
    head: np.ndarray  # for each row: the row it duplicates (itself when kept)
    similarity: np.ndarray  # similarity to its head (1.0 for heads)
    candidates: int  # candidate pairs checked
    confirmed: int  # pairs that passed the check and the axis guard
    vetoed: dict[str, int] = field(default_factory=dict)  # pairs refused, per veto
    #: per row: the veto its pair with its head trips (kept in the cluster by the vote), else PASS
    head_veto: np.ndarray | None = None


def key_hashes(keys: pl.Series) -> pl.DataFrame:
    """Two 64-bit hashes of each key (`h1`, `h2`), together its identity for exact duplicates: 16 bytes
    a row where the key takes a hundred or more, and two different keys share both about once in
    10^25 runs of ten million rows."""
    return pl.DataFrame({"h1": keys.hash(seed=11), "h2": keys.hash(seed=12)})


def exact_heads(hashes: pl.DataFrame) -> np.ndarray:
    """For each row of `key_hashes`, the first row with the same key (itself when it is the first).

    Grouped by `h1` in numpy (a sort: its arrays go back to the system when freed, where a polars
    window over ten million rows left a gigabyte held); a row whose first row by `h1` has another
    `h2` (another key) keeps its own."""
    h1, h2 = hashes["h1"].to_numpy(), hashes["h2"].to_numpy()
    _, first, inverse = np.unique(h1, return_index=True, return_inverse=True)
    head = first[inverse]
    clash = np.flatnonzero(h2 != h2[head])
    head[clash] = clash
    return head.astype(np.int64)


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Union-find over pairs, vectorized: each row's label is the smallest row of its component."""
    parent = np.arange(n, dtype=np.int64)
    if len(left) == 0:
        return parent
    while True:
        pa, pb = parent[left], parent[right]
        if (pa == pb).all():
            return parent
        low = np.minimum(pa, pb)
        np.minimum.at(parent, pa, low)
        np.minimum.at(parent, pb, low)
        while True:  # pointer jumping until every row points at a root
            grand = parent[parent]
            if (grand == parent).all():
                break
            parent = grand


#: keys per block of signatures, and pairs per block of checks: what is held at once stays small.
_BLOCK = 1 << 18
#: up to this many keys, all of them are converted to Python strings once (about 130 bytes a key).
_ALL_KEYS = 3_000_000


def band_hashes(keys: pl.Series, config: NearDupConfig) -> np.ndarray:
    """LSH band hashes of every key (rows × bands), computed a block of keys at a time.

    Kept as 32 bits: at ten million keys a band sees a few thousand chance collisions, which the exact
    check drops, at half the memory of 64 bits."""
    bands, rows = lsh_params(config.lsh_threshold, config.num_perm)
    out = np.empty((len(keys), bands), dtype=np.uint32)
    for lo in range(0, len(keys), _BLOCK):
        cps, offsets = codepoints(keys.slice(lo, _BLOCK))
        part, _ = lsh_bands(cps, offsets, ngram=config.ngram, num_perm=config.num_perm, bands=bands,
                            rows=rows, seed=config.seed)  # fmt: skip
        out[lo : lo + len(part)] = part >> np.uint64(32)
    return out


#: the columns `sketch` makes
SKETCH_COLUMNS = ("bands", "neg_num", "who")


def sketch(keys: pl.Series, config: NearDupConfig) -> pl.DataFrame:
    """Near-dup's work on each key alone, done in the clean stage's first pass where its workers share
    it out (two processes on two cores): the key's LSH band
    hashes (`bands`) and, where the veto runs, its `veto_hashes` (`neg_num`, `who`). Zeros for an
    empty key, which near-dup never sees."""
    keyed = (keys.str.len_bytes() > 0).arg_true().to_numpy()
    bands, _ = lsh_params(config.lsh_threshold, config.num_perm)
    band_hash = np.zeros((len(keys), bands), dtype=np.uint32)
    band_hash[keyed] = band_hashes(keys.gather(keyed), config)
    neg_num, who = np.zeros(len(keys), dtype=np.uint64), np.zeros(len(keys), dtype=np.uint64)
    if config.veto:
        neg_num[keyed], who[keyed] = veto_hashes(keys.gather(keyed))
    return pl.DataFrame({"bands": band_hash, "neg_num": neg_num, "who": who})


def short_pairs(keys: pl.Series, short: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of keys of 2 to `short - 1` characters that are one edit apart or may be (candidates for
    Levenshtein distance <= 1): the key itself or one of its one-character deletions equal to the other
    key's or one of its deletions. Each key and its deletions are hashed; equal hashes pair up."""
    lengths = keys.str.len_chars()
    rows = ((lengths >= 2) & (lengths < short)).arg_true()
    if len(rows) < 2:
        return (np.empty(0, np.int64),) * 2
    part, n = keys.gather(rows), lengths.gather(rows)
    variants = [pl.DataFrame({"row": rows, "v": part})]
    for i in range(short - 1):  # the key without its i-th character, for keys that have one
        has = n > i
        deleted = part.str.slice(0, i) + part.str.slice(i + 1)
        variants.append(pl.DataFrame({"row": rows.filter(has), "v": deleted.filter(has)}))
    every = pl.concat(variants)
    a, b = bucket_pairs(every["v"].hash(seed=13).to_numpy())
    owner = every["row"].cast(pl.Int64).to_numpy()
    a, b = owner[a], owner[b]
    keep = a != b
    return np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])


def _by_block(pick, a: np.ndarray, b: np.ndarray, score) -> np.ndarray:
    """`score(rows_a, rows_b, keys_a, keys_b)` over pairs of rows, a block of pairs at a time: beyond
    `_ALL_KEYS` the keys are Python strings only a block at a time."""
    parts = [score(a[i : i + _BLOCK], b[i : i + _BLOCK], pick(a[i : i + _BLOCK]), pick(b[i : i + _BLOCK]))
             for i in range(0, len(a), _BLOCK)]  # fmt: skip
    return np.concatenate([np.zeros(0, dtype=bool), *parts])


@dataclass
class Edges:
    """Candidate pairs that passed the similarity check, before the veto and the axis guard.

    `codes` are the veto's (PASS or VETOES' code + 1) per edge, None where no veto runs; `checked`
    counts the candidate pairs the check saw (band pairs once each, short-key pairs as found)."""

    left: np.ndarray
    right: np.ndarray
    codes: np.ndarray | None
    checked: int


def band_pairs(band_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pairs (low, high) of rows sharing a bucket in any band, by `bucket_pairs`' rule per band.

    A bucket's pairs depend only on its members in row order (the caps on large buckets included), so
    any split of a band's rows that keeps each bucket whole gives the same pairs."""
    n = np.uint64(len(band_hash))
    pair = np.zeros(0, dtype=np.uint64)
    for j in range(band_hash.shape[1]):
        a, b = bucket_pairs(band_hash[:, j])
        # distinct pairs, folded in band by band: the bands mostly find the same pairs, and all bands'
        # at once were 14x the distinct ones (1.5 GB at ten million rows). Kept sorted, adding a band's
        # is a merge: a stable sort of two sorted runs is linear.
        pair = np.sort(
            np.concatenate([pair, np.sort(a.astype(np.uint64) * n + b.astype(np.uint64))]), kind="stable"
        )
        pair = pair[np.r_[True, pair[1:] != pair[:-1]]] if len(pair) else pair
    rows = np.int32 if len(band_hash) < 2**31 else np.int64  # half the memory of the pairs at 10M rows
    return (pair // n).astype(rows), (pair % n).astype(rows)


def _similarity(_a: np.ndarray, _b: np.ndarray, x: np.ndarray, y: np.ndarray, *, workers: int) -> np.ndarray:
    return process.cpdist(x, y, scorer=Indel.normalized_similarity, workers=workers)


def passes(x: np.ndarray, y: np.ndarray, threshold: float, *, short: bool, workers: int = 1) -> np.ndarray:
    """Which pairs of keys pass the exact check: Indel similarity >= threshold, or for short-key pairs
    Levenshtein distance <= 1. Pure in the two keys, so any worker gives the same answer."""
    if short:
        return process.cpdist(x, y, scorer=Levenshtein.distance, workers=workers) <= 1
    return process.cpdist(x, y, scorer=Indel.normalized_similarity, workers=workers) >= threshold


def veto_batch(x: np.ndarray, y: np.ndarray, *, workers: int = 1) -> np.ndarray:
    """The veto's codes for pairs of keys given as two arrays (a `Verifier` over just these keys)."""
    if not len(x):
        return np.zeros(0, dtype=np.int8)
    verifier = Verifier(pl.Series(np.concatenate([x, y]), dtype=pl.Utf8))
    m = len(x)
    return verifier.codes(np.arange(m), np.arange(m, 2 * m), x, y, workers=workers)


def _picker(keys: pl.Series) -> Callable[[np.ndarray], np.ndarray]:
    """Keys of given rows as an object array: up to `_ALL_KEYS` all are converted once (the conversion is
    the cost), beyond that (their Python strings alone would pass a gigabyte) a block at a time."""
    if len(keys) <= _ALL_KEYS:
        every = keys.to_numpy()
        return lambda rows: every[rows]
    return lambda rows: keys.gather(rows).to_numpy()


def local_edges(
    keys: pl.Series,
    config: NearDupConfig,
    *,
    veto: bool,
    workers: int = 2,
    pick=None,
    verifier=None,
    sketched: dict[str, np.ndarray] | None = None,
) -> Edges:
    """The edges on this machine: band hashes, band pairs and short-key pairs, the check, the veto.

    `sketched`: the keys' `sketch` columns; its `bands` are taken out of it (let go once paired)."""
    pick = pick or _picker(keys)
    a, b = band_pairs(sketched.pop("bands") if sketched else band_hashes(keys, config))
    short_a, short_b = short_pairs(keys, config.short_chars)
    ok = _by_block(
        pick, a, b, lambda _a, _b, x, y: passes(x, y, config.threshold, short=False, workers=workers)
    )
    short_ok = _by_block(
        pick, short_a, short_b, lambda _a, _b, x, y: passes(x, y, 0, short=True, workers=workers)
    )
    la, lb = np.concatenate([a[ok], short_a[short_ok]]), np.concatenate([b[ok], short_b[short_ok]])
    checked = len(a) + len(short_a)
    del a, b, ok
    codes = None
    if veto:
        verifier = verifier or Verifier(keys)
        needs = _by_block(pick, la, lb, partial(verifier.needs, workers=workers)).astype(np.int8)
        # A pair whose rows the pairs needing no script join already changes no cluster whatever its
        # veto says: its script (near-dup's one Python loop) is not read. Most pairs within a cluster
        # of copies are such; where the veto runs the axis guard does not, so nothing cuts them apart.
        joined = components(len(keys), la[needs == 0], lb[needs == 0])
        ask = np.flatnonzero((needs > 0) & (joined[la] != joined[lb]))
        codes = np.where(needs > 0, UNCHECKED, PASS).astype(np.int8)
        for part in np.array_split(ask, max(1, len(ask) // _BLOCK)):  # a block of keys as Python strings
            codes[part] = script(pick(la[part]), pick(lb[part]), needs[part])
    return Edges(la, lb, codes, checked)


#: where the edges come from: this machine, or an engine that spreads the same stages over a cluster
#: (`zaoshu.engines`); everything after the edges runs here either way.
EDGE_SOURCE: ContextVar[Callable[..., Edges]] = ContextVar("edge_source", default=local_edges)


@contextmanager
def edge_source(source: Callable[..., Edges]) -> Iterator[None]:
    """Within the block, `near_heads` gets its edges from `source` (same arguments as `local_edges`)."""
    token = EDGE_SOURCE.set(source)
    try:
        yield
    finally:
        EDGE_SOURCE.reset(token)


def near_heads(
    keys: list[str] | pl.Series,
    config: NearDupConfig,
    *,
    axis_values: dict[str, list[str]] | None = None,
    workers: int = 2,
    sketched: dict[str, np.ndarray] | None = None,
) -> NearDupResult:
    """Cluster near-duplicate keys (all distinct, all non-empty, in priority order: earlier rows win).

    `sketched`: the keys' `sketch` columns as arrays, if made already (emptied here, as used)."""
    keys = keys if isinstance(keys, pl.Series) else pl.Series("key", keys, dtype=pl.Utf8)
    n = len(keys)
    if n < 2:
        return NearDupResult(np.arange(n), np.ones(n), 0, 0, {}, np.zeros(n, dtype=np.int8))
    pick = _picker(keys)
    # where the recipe's axes are known the axis guard stands in for the veto (the veto there refused
    # only copies: recall 0.983 -> 0.957 on the recipe's benchmark)
    veto = bool(config.veto and not (config.axis_guard and axis_values))
    hashes = (sketched.pop("neg_num"), sketched.pop("who")) if sketched and veto else None
    verifier = Verifier(keys, hashes) if veto else None  # per-key hashes: built once, used by both steps
    del hashes
    source = EDGE_SOURCE.get()
    if source is local_edges:
        edges = local_edges(
            keys, config, veto=veto, workers=workers, pick=pick, verifier=verifier, sketched=sketched
        )
    else:  # an engine's source makes its own band hashes: the given ones go now
        if sketched:
            sketched.pop("bands", None)
        edges = source(keys, config, veto=veto, workers=workers)
    return heads_from_edges(
        keys, edges, config, axis_values=axis_values, workers=workers, pick=pick, verifier=verifier
    )


def heads_from_edges(
    keys: pl.Series,
    edges: Edges,
    config: NearDupConfig,
    *,
    axis_values: dict[str, list[str]] | None = None,
    workers: int = 2,
    pick=None,
    verifier: Verifier | None = None,
) -> NearDupResult:
    """Clusters from verified edges: the veto's and the axis guard's refusals, union-find (each cluster
    keeps its smallest row), axis splits, chained members taken out, similarity to the head."""
    n = len(keys)
    pick = pick or _picker(keys)
    la, lb = edges.left, edges.right
    vetoed: dict[str, int] = {}
    unchecked = 0  # counted as confirmed: the pairs around them join their rows all the same
    if edges.codes is not None and len(la):
        unchecked = int((edges.codes == UNCHECKED).sum())
        counts = np.bincount(edges.codes, minlength=len(VETOES) + 1)
        vetoed = {name: int(counts[i + 1]) for i, name in enumerate(VETOES)}
        fine = edges.codes == PASS
        la, lb = la[fine], lb[fine]
    guard = None
    if config.axis_guard and axis_values:
        # only rows in a confirmed pair can be merged, so only they need their axis values
        involved = pl.Series(np.concatenate([la, lb])).unique().to_numpy()
        found = axis_sets(keys.gather(involved), axis_values)
        ids = np.zeros((n, found.ids.shape[1]), dtype=np.int32)
        ids[involved] = found.ids
        guard = AxisSets(ids, found.sets)
        del found
        fine = ~conflicts(guard, la, lb)
        vetoed["axis"] = int((~fine).sum())
        la, lb = la[fine], lb[fine]
    head = components(n, la, lb)
    if guard is not None:
        head = split_conflicts(head, guard)
    dup = np.flatnonzero(head != np.arange(n))
    head_veto = np.zeros(n, dtype=np.int8)
    if edges.codes is not None and len(dup):
        verifier = verifier or Verifier(keys)
        pairs = np.minimum(la, lb).astype(np.uint64) * np.uint64(n) + np.maximum(la, lb).astype(np.uint64)
        refused, codes = _refuse_chained(head, dup, pick, verifier, workers, pairs)
        head_veto[dup] = codes
        head_veto[refused] = PASS
        head[refused] = refused
        vetoed["chain"] = len(refused)
        dup = np.setdiff1d(dup, refused, assume_unique=True)
    similarity = np.ones(n)
    if len(dup):
        similarity[dup] = _by_block(pick, dup, head[dup], partial(_similarity, workers=workers))
    return NearDupResult(head, similarity, edges.checked, len(la) + unchecked, vetoed, head_veto)


#: other members of its cluster a member the veto refuses against its kept row is asked against
_VOTES = 6


def _refuse_chained(
    head: np.ndarray,
    dup: np.ndarray,
    pick,
    verifier: Verifier,
    workers: int,
    passed_pairs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Members of a cluster to take out: linked through a chain to texts the veto keeps apart.

    A chain (祝岳父… ~ 祝Z父… ~ 祝姑父…, the middle one a copy whose edit hit the very word) can link two
    texts the veto refuses. A member the veto refuses against its kept row is asked against up to
    `_VOTES` other members as well: a copy whose own edits tripped the veto passes most of them and
    stays; a sibling linked through the chain fails most and leaves (and is kept). Returns the rows
    to take out, and the veto code of every `dup` against its head. `passed_pairs` (low * n + high)
    are the pairs that passed already: a member with one to its head needs no second look.
    """
    n = np.uint64(len(head))
    h = head[dup]
    direct = np.isin(
        np.minimum(dup, h).astype(np.uint64) * n + np.maximum(dup, h).astype(np.uint64), passed_pairs
    )
    codes = np.zeros(len(dup), dtype=np.int8)
    ask = np.flatnonzero(~direct)
    codes[ask] = _by_block(pick, dup[ask], h[ask], partial(verifier.codes, workers=workers))
    suspect = dup[codes != PASS]
    if not len(suspect):
        return suspect, codes
    fine = dup[codes == PASS]
    fine = fine[np.argsort(head[fine], kind="stable")]
    fine_heads = head[fine]
    lo = np.searchsorted(fine_heads, head[suspect], side="left")
    hi = np.minimum(np.searchsorted(fine_heads, head[suspect], side="right"), lo + _VOTES)
    who = np.repeat(suspect, hi - lo)
    other = fine[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])] if len(who) else who
    aye = _by_block(pick, who, other, partial(verifier.codes, workers=workers)) == PASS
    ayes = np.bincount(np.searchsorted(suspect, who), weights=aye, minlength=len(suspect))
    asked = (hi - lo) + 1  # the kept row said no
    return suspect[ayes * 2 <= asked], codes
