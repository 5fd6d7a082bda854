"""A Ray session for one cleaning run: the user's cluster (`--ray-address`) or a small local one.

An address that does not answer is a ZaoshuError before anything is written: `ray.init` itself would
wait on it for minutes. A local Ray gets a bounded object store (what does not fit spills to disk, the
worker heaps stay small) and logs (and spills) to a temporary folder, removed when it stops, not to the user's terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from zaoshu.errors import ZaoshuError

#: the local object store: enough for a block of band hashes per worker and the pairs in flight
LOCAL_OBJECT_STORE = 1 << 30


def require_ray():
    """The ray module, or a ZaoshuError saying how to install the extra."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ZaoshuError('--engine ray needs Ray: pip install "zaoshu[ray]"') from e
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address whose host does not answer on its port (a ray:// client address included)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ZaoshuError(f"--ray-address: expected HOST:PORT (or ray://HOST:PORT, or auto), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ZaoshuError(f"--ray-address {address}: no Ray cluster answers there ({e})") from e


@contextmanager
def ray_session(
    address: str | None = None, *, object_store_memory: int = LOCAL_OBJECT_STORE
) -> Iterator[None]:
    """Join `address`, or start a local Ray sized to this machine; shut down only what was started here.

    A session already open in this process (a test's, a notebook's) is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    logs = None
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as e:  # ray raises ConnectionError, RuntimeError or its own errors here
            raise ZaoshuError(f"--ray-address {address}: could not join the cluster: {e}") from e
    else:
        logs = tempfile.mkdtemp(prefix="zaoshu-ray-")
        ray.init(
            num_cpus=os.cpu_count() or 1,
            object_store_memory=object_store_memory,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            _temp_dir=logs,
        )
    try:
        yield
    finally:
        ray.shutdown()
        if logs:  # the local session's logs and spilled objects
            shutil.rmtree(logs, ignore_errors=True)
