"""Writing users' files safely: one atomic writer and one check that an output never replaces an input.

Every command writes through `atomic_write` (a temp file beside the target, renamed over it only when the
write finished), so a crash, Ctrl-C or a full disk never leaves half a file where a good one was. Every
command calls `guard_outputs` before it reads or writes anything, so `-o` naming one of its own inputs (also
through a link, `..` or a folder that holds it) is refused instead of silently destroying the input.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from zaoshu.errors import ZaoshuError

PathLike = str | os.PathLike[str]


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def guard_outputs(
    outputs: Iterable[PathLike | None],
    inputs: Iterable[PathLike | None],
    *,
    output_dirs: Iterable[PathLike | None] = (),
) -> None:
    """Refuse, before anything is read or written, an output that is (or would hold) one of the inputs.

    `outputs` are files the command will write; `output_dirs` are folders it will write files into. Paths are
    compared after resolving links and `..`, so `./a/../x.jsonl` and a symlink to `x.jsonl` are `x.jsonl`.
    An input folder may not be, or hold, an output either: the next run would read its own output back.
    """
    resolved_inputs = [(raw, _resolved(raw)) for raw in inputs if raw is not None]
    for raw_out in outputs:
        if raw_out is None:
            continue
        out = _resolved(raw_out)
        for raw_in, inp in resolved_inputs:
            if out == inp:
                raise ZaoshuError(
                    f"the output is also an input ({raw_in}); writing it would destroy that input: "
                    "choose another output path",
                    path=raw_out,
                )
            if Path(raw_in).is_dir() and _is_within(out, inp):
                raise ZaoshuError(
                    f"the output is inside the input folder {raw_in}; a later run would read it back as "
                    "input: choose a path outside that folder",
                    path=raw_out,
                )
        if out.is_dir():
            raise ZaoshuError("is a folder; expected a file path for this output", path=raw_out)
    for raw_dir in output_dirs:
        if raw_dir is None:
            continue
        folder = _resolved(raw_dir)
        if folder.exists() and not folder.is_dir():
            raise ZaoshuError("is a file; expected a folder for this output", path=raw_dir)
        for raw_in, inp in resolved_inputs:
            if _is_within(inp, folder) or _is_within(folder, inp):
                raise ZaoshuError(
                    f"the output folder holds or is inside the input {raw_in}; writing there could "
                    "replace it or read it back: choose another output folder",
                    path=raw_dir,
                )


def ensure_parent(path: PathLike) -> Path:
    """Create the folder that will hold `path`, or say clearly why it cannot be."""
    path = Path(path)
    _make_folder(path.parent, path)
    return path


def _make_folder(folder: Path, named: PathLike) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ZaoshuError(f"cannot create the folder {folder}: a file is in the way", path=named) from None
    except OSError as e:
        raise ZaoshuError(f"cannot create the folder {folder}: {e.strerror}", path=named) from None


def check_replaceable(files: Iterable[PathLike | None]) -> None:
    """Refuse to replace an existing file that is not JSON Lines or JSON data (`-o notes.txt`, `-o run.py`).

    A data command (clean, convert, merge, split, judge) may replace what an earlier run of it wrote, which is
    always JSON objects a line or a JSON array; anything else at that path is somebody's file, kept as it is.
    """
    for raw in files:
        if raw is None:
            continue
        path = Path(raw)
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head and head[:1] not in (b"{", b"["):
            raise ZaoshuError(
                "exists and is not a JSON Lines or JSON data file; zaoshu replaces only data files it could "
                "have written: move it away or choose another output path",
                path=raw,
            )


def check_writable(files: Iterable[PathLike | None] = (), dirs: Iterable[PathLike | None] = ()) -> None:
    """Prove, before a command reads its inputs, that each output can be written: a read-only place, a parent
    that is a file or an output that is a folder is a clear error now, not a traceback after the work.

    It writes (and removes) an empty probe file where each output will go; missing folders are created.
    """
    places: list[tuple[Path, PathLike]] = []
    for raw in files:
        if raw is None:
            continue
        target = ensure_parent(raw)
        if target.is_dir():
            raise ZaoshuError("is a folder; expected a file path for this output", path=raw)
        places.append((target.parent, raw))
    for raw in dirs:
        if raw is None:
            continue
        folder = Path(raw)
        if folder.exists() and not folder.is_dir():
            raise ZaoshuError("is a file; expected a folder for this output", path=raw)
        _make_folder(folder, raw)
        places.append((folder, raw))
    for folder, raw in places:
        try:
            fd, probe = tempfile.mkstemp(prefix=".zaoshu-", suffix=".probe", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise _os_error(e, raw) from None


@contextlib.contextmanager
def removed_if_left_empty(folder: PathLike) -> Iterator[None]:
    """A folder a command makes for its outputs (`check_writable` inside the block) goes again when the
    command fails before writing into it: a failed run leaves no empty folder behind."""
    existed = Path(folder).exists()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):  # only an empty folder: anything written there stays
                Path(folder).rmdir()
        raise


def _os_error(e: OSError, path: PathLike) -> ZaoshuError:
    reason = e.strerror or str(e)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += " (is the place read-only, or owned by another user?)"
    elif e.errno == errno.ENOSPC:
        reason += " (the disk is full; nothing was replaced)"
    elif e.errno == errno.EISDIR:
        reason = "is a folder; expected a file path"
    return ZaoshuError(f"cannot write: {reason}", path=path)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside `path` for writing; rename it over `path` only if the block finishes.

    On any error (or Ctrl-C) the temp file is removed and `path` keeps what it had. OS errors become a
    ZaoshuError naming the path, so an unwritable place is a clear message, not a traceback.
    """
    if "w" not in mode:
        raise ValueError("atomic_write opens files for writing only")
    target = ensure_parent(path)
    if target.is_dir():
        raise ZaoshuError("is a folder; expected a file path for this output", path=path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _os_error(e, path) from None
    tmp = Path(tmp_name)
    try:
        with open(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
        # mkstemp makes the file 0600; a user's data file gets the usual permissions of a new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _os_error(e, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """A whole small file (a report, a config, a stats file) written atomically."""
    with atomic_write(path) as f:
        f.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
