"""One writer per run folder: an advisory lock held by a sweep, a resume or a report writing into the folder.

The lock is ``<run folder>/.lock``, locked with ``fcntl.flock`` (exclusive, non-blocking) and holding one
JSON line about its holder: pid, host, start time and command. The operating system releases a
``flock`` when its process ends, however it ends (SIGKILL included), so a lock left behind by a dead
process is stale by construction: the next writer simply takes it, and the file's old text only says who
held it last. A second live writer is refused with :class:`RunFolderBusy`, a one-line
:class:`~genbench.config.ConfigError` (exit code 2) that names the holder.

Where ``fcntl`` does not exist (Windows), the lock is the file's exclusive creation instead; a file whose
holder is a process that no longer runs on this host is taken over (stale), one from another host is
refused with its holder named (delete it by hand once that run is gone).

Example::

    >>> with RunLock(run_dir):
    ...     ...   # append rows, write the report
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from genbench.config import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunFolderBusy(ConfigError):
    """Another live process is writing this run folder."""


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]})


def describe_holder(text: str) -> str:
    """'pid 123 on host h since 2026-12-02 01:00:00 (python run_benchmarks.py ...)' from a lock file's text."""
    try:
        info = json.loads(text)
        return (f"pid {info['pid']} on host {info['host']} since {info['since']}"
                + (f" ({info['command']})" if info.get("command") else ""))
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file is unreadable)"


class RunLock:
    """The exclusive lock of one run folder (module docstring); a context manager, re-entrant in a process."""

    _held: dict[Path, int] = {}  # resolved folder -> depth, for nested use in one process

    def __init__(self, run_dir: str | Path, what: str = "write") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        key = self.run_dir.resolve()
        if key in RunLock._held:
            RunLock._held[key] += 1
            return self
        if fcntl is not None:
            self._acquire_flock()
        else:  # pragma: no cover -- Windows
            self._acquire_exclusive_file()
        RunLock._held[key] = 1
        return self

    def _refuse(self, holder: str) -> RunFolderBusy:
        return RunFolderBusy(f"cannot {self.what} {self.run_dir}: it is in use by {holder}; wait for that run to "
                             f"finish (or stop it), then try again")

    def _acquire_flock(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot {self.what} {self.run_dir}: cannot create its lock file "
                              f"({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            finally:
                os.close(fd)
            raise self._refuse(describe_holder(text)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_text() + "\n").encode(), 0)
        self._fd = fd

    def _acquire_exclusive_file(self) -> None:  # pragma: no cover -- Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text = self.path.read_text(errors="replace")
                if not _stale(text):
                    raise self._refuse(describe_holder(text)) from None
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, (_holder_text() + "\n").encode())
            os.close(fd)
            self._fd = -1
            return
        raise self._refuse(describe_holder(self.path.read_text(errors="replace")))

    def release(self) -> None:
        key = self.run_dir.resolve()
        depth = RunLock._held.get(key, 0)
        if depth > 1:
            RunLock._held[key] = depth - 1
            return
        RunLock._held.pop(key, None)
        if self._fd is None:
            return
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock; the file stays, naming its last holder
        else:  # pragma: no cover -- Windows
            self.path.unlink(missing_ok=True)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _stale(text: str) -> bool:  # pragma: no cover -- Windows
    """True when the holder named in ``text`` is a process of this host that no longer runs."""
    try:
        info: dict[str, Any] = json.loads(text)
        if info["host"] != socket.gethostname():
            return False
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, PermissionError, OSError):
        return False
    return False
