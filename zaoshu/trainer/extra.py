"""The train extra: what `zaoshu train` and `zaoshu chat` import lazily, and the command that installs it.

Checked with `importlib.util.find_spec` before any work, so a bare `pip install -e .` gets one clear error
naming the install command instead of a ModuleNotFoundError traceback from deep inside torch's importers.
"""

from __future__ import annotations

import importlib.util

from zaoshu.errors import ZaoshuError

INSTALL_HINT = 'pip install -e ".[train]"'  # quoted: zsh globs the bare brackets


def missing(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(what: str, *modules: str) -> None:
    """Raise a ZaoshuError saying `what` needs the missing modules and how to install them."""
    absent = missing(*modules)
    if absent:
        raise ZaoshuError(
            f"{what} needs {', '.join(absent)} (not installed); install the train extra: {INSTALL_HINT}"
        )
