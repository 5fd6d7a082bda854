"""The response cache: a rerun never pays twice for a request it already made.

A reply is stored under the task id and `records.request_fingerprint` (messages, model, sampling
parameters, endpoint), so a new `-o` for the same recipe costs nothing for what was generated before, while a
changed prompt, model or temperature misses and is sent. One SQLite file in the user's cache dir
($ZAOSHU_CACHE_DIR, else the platform's, e.g. ~/.cache/zaoshu/responses.sqlite3; $ZAOSHU_RESPONSE_CACHE
names the file itself):

- WAL mode: readers never wait for a writer, and a writer holds the lock only for one short batch, so two
  runs sharing the cache neither corrupt it nor block each other for long (busy timeout 30 s).
- Bounded: past `max_bytes` of stored replies (default 1 GiB, $ZAOSHU_CACHE_MAX_MB) the least recently used
  are dropped when a run closes it.
- Hits are looked up in one pass before sending (a few queries of 500 keys), stores are written in
  batches, so a request costs a hash and a buffered row, not a transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from zaoshu.errors import ZaoshuError
from zaoshu.generator.resume import fingerprint

FILENAME = "responses.sqlite3"
DEFAULT_MAX_BYTES = 1 << 30
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,   -- task id + ':' + request fingerprint
    reply BLOB NOT NULL,    -- JSON: {"content": ..., "meta": {...}}
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS replies_used ON replies (used);
"""


def cache_dir() -> Path:
    """$ZAOSHU_CACHE_DIR, else the platform's user cache dir (~/.cache/zaoshu on Linux)."""
    env = os.environ.get("ZAOSHU_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("zaoshu", appauthor=False))


def default_path() -> Path:
    """$ZAOSHU_RESPONSE_CACHE (a file), else responses.sqlite3 in `cache_dir()`."""
    env = os.environ.get("ZAOSHU_RESPONSE_CACHE")
    return Path(env).expanduser() if env else cache_dir() / FILENAME


def max_bytes_from_env() -> int:
    value = os.environ.get("ZAOSHU_CACHE_MAX_MB")
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return max(int(float(value) * 1024 * 1024), 0)
    except ValueError:
        raise ZaoshuError(f"ZAOSHU_CACHE_MAX_MB={value!r}: expected a number of megabytes") from None


class ResponseCache:
    """The SQLite store. Use as a context manager; `get_many`, `put_many`, `info`, `clear`."""

    def __init__(self, path: Path | None = None, *, max_bytes: int | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.max_bytes = max_bytes_from_env() if max_bytes is None else max_bytes
        self.db: sqlite3.Connection | None = None

    def open(self) -> ResponseCache:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ZaoshuError(
                f"the response cache cannot be opened ({e}); `zaoshu cache clear` removes it, "
                "--no-cache runs without it",
                path=self.path,
            ) from None
        except OSError as e:
            raise ZaoshuError(
                f"the response cache cannot be created ({e.strerror})", path=self.path
            ) from None
        self.db = db
        return self

    def close(self) -> None:
        if self.db is not None:
            try:
                self.prune()
            finally:
                self.db.close()
                self.db = None

    def __enter__(self) -> ResponseCache:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self.db is None:
            self.open()
        assert self.db is not None
        return self.db

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored replies of those keys that are cached (and marks them used)."""
        db = self._conn()
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(keys), 500):
            marks = ",".join("?" * len(chunk))
            for key, blob in db.execute(f"SELECT key, reply FROM replies WHERE key IN ({marks})", chunk):
                found[key] = orjson.loads(blob)
        if found:
            now = time.time()
            with _transaction(db):
                db.executemany("UPDATE replies SET used = ? WHERE key = ?", ((now, k) for k in found))
        return found

    def put_many(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Store (key, {"content", "meta"}) pairs; one short transaction."""
        if not rows:
            return
        now = time.time()
        blobs = [(key, orjson.dumps(reply)) for key, reply in rows]
        db = self._conn()
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO replies (key, reply, size, created, used) VALUES (?, ?, ?, ?, ?)",
                ((key, blob, len(blob) + len(key), now, now) for key, blob in blobs),
            )

    def prune(self) -> int:
        """Drop the least recently used replies until the stored ones fit `max_bytes` (with 10 % room)."""
        db = self._conn()
        total = db.execute("SELECT COALESCE(SUM(size), 0) FROM replies").fetchone()[0]
        if total <= self.max_bytes:
            return 0
        excess = total - int(self.max_bytes * 0.9)
        dropped = 0
        with _transaction(db):
            for key, size in db.execute("SELECT key, size FROM replies ORDER BY used").fetchall():
                if excess <= 0:
                    break
                db.execute("DELETE FROM replies WHERE key = ?", (key,))
                excess -= size
                dropped += 1
        return dropped

    def info(self) -> dict[str, Any]:
        db = self._conn()
        entries, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM replies").fetchone()
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        on_disk = sum(p.stat().st_size for p in files if p.exists())
        return {
            "path": str(self.path),
            "entries": entries,
            "bytes": size,
            "file_bytes": on_disk,
            "max_bytes": self.max_bytes,
        }

    def clear(self) -> int:
        db = self._conn()
        with _transaction(db):
            n = db.execute("DELETE FROM replies").rowcount
        db.execute("VACUUM")
        return n


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT: the write lock is taken at once (or waited for, up to the busy timeout)
    instead of failing midway when another run writes too."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class RunCache:
    """One run's use of the cache: keys of its tasks, the hits served before sending, stores in batches."""

    def __init__(
        self, cache: ResponseCache, *, model: str, params: dict[str, Any], endpoint: str, batch: int = 256
    ) -> None:
        self.cache = cache
        self.model = model
        self.params = params
        self.endpoint = endpoint
        self.batch = batch
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.hits = 0
        self.served: list[str] = []  # ids written from the cache
        self.saved_text = ""  # what the hits saved, formatted in the price's currency

    def key(self, task: Any) -> str:
        fp = fingerprint(task.request, model=self.model, params=self.params, endpoint=self.endpoint)
        return f"{task.id}:{fp}"

    def lookup(self, tasks: Iterable[Any]) -> dict[str, dict[str, Any]]:
        """task id -> stored reply, for the tasks that hit."""
        found: dict[str, dict[str, Any]] = {}
        keys: dict[str, str] = {}
        for task in tasks:  # in chunks: 100k keys at once would cost tens of MB for a moment
            keys[self.key(task)] = task.id
            if len(keys) >= 500:
                found.update((keys[k], reply) for k, reply in self.cache.get_many(keys).items())
                keys.clear()
        found.update((keys[k], reply) for k, reply in self.cache.get_many(keys).items())
        return found

    def store(self, task: Any, content: str, meta: dict[str, Any]) -> None:
        self.pending.append((self.key(task), {"content": content, "meta": meta}))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        # Busy past its timeout (another run holding it): these replies are in the output anyway.
        with contextlib.suppress(sqlite3.OperationalError):
            self.cache.put_many(rows)

    def close(self) -> None:
        self.flush()
        self.cache.close()


def open_run_cache(options: Any, info: dict[str, Any], params: dict[str, Any]) -> RunCache | None:
    """The run's cache, or None with `--no-cache`. `info` is the provider's `describe(options)`."""
    if not options.cache:
        return None
    from zaoshu.generator.providers import safe_url

    cache = ResponseCache(options.cache_path).open()
    endpoint = f"{options.provider}|{safe_url(str(info.get('base_url') or ''))}"
    return RunCache(cache, model=str(info.get("model") or ""), params=params, endpoint=endpoint)


def serve_hits(
    run_cache: RunCache, tasks: Any, out: Path, fingerprints: dict[str, str] | None = None
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Write the cached replies of `tasks` to `out` (appended, like sent ones) and return the tasks left to
    send and the metas of the hits (their usage is what the hits saved). A hit's meta says `cached: true`."""
    from zaoshu.records import AppendSink

    hits = run_cache.lookup(tasks)
    if not hits:
        return list(tasks), []
    left, metas = [], []
    with AppendSink(out, fsync_every=4096) as sink:
        for task in tasks:
            reply = hits.get(task.id)
            if reply is None or not isinstance(reply.get("content"), str):
                left.append(task)
                continue
            meta = {**(reply.get("meta") or {}), "cached": True}
            if fingerprints and task.id in fingerprints:  # this run's, as resume checks it
                meta["fingerprint"] = fingerprints[task.id]
            sink.write(task.to_record(reply["content"], meta))
            metas.append(meta)
            run_cache.served.append(task.id)
    run_cache.hits += len(metas)
    return left, metas
