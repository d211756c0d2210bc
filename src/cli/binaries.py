"""Where pip put the Temporal binaries: the venv's scripts folder, whether or not it is on PATH."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path


def binary(name: str) -> str:
    """The path of ``name`` from the venv's scripts folder, else from PATH; fails loudly."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: make installs it into .venv")
    return found
