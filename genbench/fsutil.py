"""The one atomic-write helper: write to a temporary name beside the target, then ``os.replace``.

A reader never sees a torn file, and a crash leaves at worst a temporary file, never a half-written
target. Temporary names carry the process id, so two processes writing the same target do not share
(and truncate) one temporary file. No torch here: the CLI, the results table and the report use it.

Example::

    >>> write_text(run_dir / "summary.md", text)
    >>> atomic_write(path, lambda tmp: torch.save(blob, tmp))
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then move it onto ``path``;
    the temporary file is removed again if ``write`` raises. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique: writers never share one
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
