"""How a failure is written into the results table: one line, the error type and the innermost frame."""

from __future__ import annotations

import traceback
from pathlib import Path


def error_text(err: BaseException) -> str:
    """``Type: message (at file.py:line)`` on one line, for a row's ``message``."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {' '.join(str(err).split())}{where}"
