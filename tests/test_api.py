"""The package's public API: every stage reachable from `import zaoshu`, without importing the heavy ones early."""

from __future__ import annotations

import subprocess
import sys

import zaoshu


def test_every_exported_name_resolves():
    for name in zaoshu.__all__:
        assert getattr(zaoshu, name) is not None, name


def test_import_is_light():
    code = "import sys, zaoshu; print(sorted(m for m in ('torch', 'xtuner', 'aiohttp', 'datasketch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
