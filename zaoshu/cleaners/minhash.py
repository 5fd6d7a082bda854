"""datasketch's MinHash, computed for many texts at once.

Per text, `datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash, scheme="affine32")` fed with the
text's character n-grams gives exactly the signature `lsh_bands` computes here (tested): the same
permutations (taken from datasketch), the same fmix32 pre-mix and `a * h + b mod 2**32`. Only the loop
is different: shingles of hundreds of texts are hashed as one numpy array, permuted in cache-sized
blocks and min-reduced per text. Band hashes use the band
layout datasketch's `MinHashLSH` picks for a threshold (`_optimal_param`), so the candidates are the
ones its index would return; grouping equal band hashes is a sort, not a dict insert per row.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import polars as pl

_P = np.uint64(0x100000001B3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (in place on a fresh array): spreads a hash over all 64 bits."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _top32(v: np.ndarray) -> np.ndarray:
    """A 32-bit hash of 64-bit polynomial hashes: xor-fold, multiply, keep the high half (in place)."""
    v ^= v >> np.uint64(29)
    v *= _M1
    v >>= np.uint64(32)
    return v.astype(np.uint32)


def shingle_hash(gram: str | bytes) -> int:
    """The 32-bit hash of one n-gram; datasketch's `hashfunc` for the signatures computed here."""
    if isinstance(gram, bytes):
        gram = gram.decode("utf-8")
    v = np.uint64(0)
    with np.errstate(over="ignore"):
        for ch in gram:
            v = v * _P + np.uint64(ord(ch))
        return int(_top32(np.array([v], dtype=np.uint64))[0])


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it to every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of datasketch's affine32 scheme for this num_perm and seed."""
    from datasketch import MinHash  # imported when used: it loads scipy, 0.4 s for every worker process

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) datasketch's MinHashLSH would choose (equal false +/- weights)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def codepoints(keys: list[str] | pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """All keys as one uint32 code point array, and each key's start offset (length n + 1)."""
    if isinstance(keys, pl.Series):
        lengths = keys.fill_null("").str.len_chars().to_numpy().astype(np.int64)
        joined = keys.fill_null("").str.join("").item() if len(keys) else ""
    else:
        lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
        joined = "".join(keys)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    return cps, offsets


def shingles(cps: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character n-gram of every text, and each text's first shingle (length rows + 1).

    A text shorter than n is one shingle, the whole text; an empty text has none. The n-gram hashes are
    a polynomial over shifted views of the whole code point array (no per-text work), then masked to
    the n-grams that do not cross a text's end.
    """
    lengths = np.diff(offsets)
    total = len(cps)
    padded = np.zeros(total + n, dtype=np.uint64)
    padded[:total] = cps
    v = padded[:total].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            v *= _P
            v += padded[k : total + k]
        mask = np.ones(total, dtype=bool)
        ends = offsets[1:]
        for k in range(1, n):
            idx = ends - k
            mask[idx[(idx >= offsets[:-1]) & (idx >= 0)]] = False
        short = np.flatnonzero((lengths > 0) & (lengths < n))
        if len(short):
            starts = offsets[:-1][short]
            acc = np.zeros(len(short), dtype=np.uint64)
            for k in range(n - 1):
                inside = k < lengths[short]
                acc = np.where(inside, acc * _P + padded[starts + k], acc)
            v[starts] = acc
            mask[starts] = True
        h = _top32(v[mask])
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    starts_of = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts_of[1:])
    return h, starts_of


def lsh_bands(
    cps: np.ndarray,
    offsets: np.ndarray,
    *,
    ngram: int,
    num_perm: int,
    bands: int,
    rows: int,
    seed: int = 1,
    chunk_rows: int = 384,
    keep_signatures: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Band hashes (texts × bands, uint64) of every text's MinHash signature.

    Texts must be non-empty. Work goes in chunks of `chunk_rows` texts, so shingles, permutation block
    and min-reduction stay in cache and memory stays flat. One thread: two gained nothing (300k keys,
    0.59 s vs 0.63 s); the clean stage's worker processes share the keys out instead. With
    `keep_signatures`, also returns the signatures (texts × num_perm, uint32) for tests and benchmarks.
    """
    a, b = permutations(num_perm, seed)
    if not keep_signatures:  # the bands use the first bands * rows permutations only
        a, b = a[: bands * rows], b[: bands * rows]
    n = len(offsets) - 1
    out = np.empty((n, bands), dtype=np.uint64)
    sigs = np.empty((n, num_perm), dtype=np.uint32) if keep_signatures else None
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        base = int(offsets[lo])
        h, starts_of = shingles(cps[base : int(offsets[hi])], offsets[lo : hi + 1] - base, ngram)
        # permutations × shingles, so each text's min runs over contiguous memory
        phv = np.multiply(a[:, None], _fmix32(h)[None, :])
        phv += b[:, None]
        sig = np.minimum.reduceat(phv, starts_of[:-1], axis=1).T
        if sigs is not None:
            sigs[lo:hi] = sig
        cube = sig[:, : bands * rows].astype(np.uint64).reshape(hi - lo, bands, rows)
        acc = np.zeros((hi - lo, bands), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(rows):
                acc *= _P
                acc += cube[:, :, k]
            out[lo:hi] = _mix64(acc)
    return out, sigs


def bucket_pairs(column: np.ndarray, *, full_upto: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows with equal values in `column`.

    Buckets up to `full_upto` rows give all their pairs; larger ones (a common phrase) give each row
    with the bucket's first row and its next three neighbours, enough to connect them without the
    quadratic blow-up; the similarity check and union-find do the rest.
    """
    if len(column) < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    # rows by value, equal values in row order (polars' stable sort: 2-4x numpy's on two cores)
    order = pl.DataFrame({"v": column}).with_row_index("r").sort("v", maintain_order=True)["r"].to_numpy()
    s = column[order]
    new = np.r_[True, s[1:] != s[:-1]]
    size = np.diff(np.r_[np.flatnonzero(new), len(s)])
    bucket_size = np.repeat(size, size)
    shared = bucket_size > 1  # a row whose value no other row has is in no pair
    order, new, bucket_size = order[shared].astype(np.int64), new[shared], bucket_size[shared]
    bucket = np.cumsum(new) - 1
    n = len(order)
    left: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    right: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    for d in range(1, full_upto):
        i = np.arange(n - d)
        ok = (bucket[i] == bucket[i + d]) & ((bucket_size[i] <= full_upto) | (d <= 3))
        if not ok.any():
            break
        left.append(order[i[ok]])
        right.append(order[i[ok] + d])
    big = np.flatnonzero(bucket_size > full_upto)
    head = np.flatnonzero(new)[bucket[big]]
    keep = big != head
    left.append(order[head[keep]])
    right.append(order[big[keep]])
    lo = np.concatenate(left)
    hi = np.concatenate(right)
    return np.minimum(lo, hi), np.maximum(lo, hi)
