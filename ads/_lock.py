"""An exclusive lock on a run directory, held by one process (and one thread) at a time.

Every command that changes a run (``ads loop``, ``ads label``; a service later) holds
``RUN/.lock`` for its whole duration: an OS lock (``fcntl.flock``) that the kernel drops
when the holder exits, however it exits (kill -9 included), so a crashed holder never
leaves the run locked. The holder writes its pid (and command) into the file; a second
writer waits up to its timeout, then fails with one line naming that pid.

The lock is reentrant within a process: the CLI takes it around a whole command and the
library functions it calls (``start``, ``resume``, ``import_labels``) take it again
without waiting. Other threads of the same process wait as other processes do.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from ads.errors import LockError

LOCK_NAME = ".lock"
#: Seconds a second writer waits for the holder by default.
DEFAULT_TIMEOUT = 10.0

_registry = threading.Lock()
_entries: dict[str, _Entry] = {}


class _Entry:
    """One lock file's state in this process: a thread lock and the OS lock's file."""

    def __init__(self):
        self.thread_lock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0
        self.created_dir = False


def _holder(path: Path) -> str:
    """What the lock file says about its holder, for messages."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "pid unknown"
    if not isinstance(info, dict) or "pid" not in info:
        return "pid unknown"
    what = f"pid {info['pid']}"
    if info.get("command"):
        what += f", {info['command']}"
    if info.get("since"):
        what += f", since {info['since']}"
    return what


class RunLock:
    """Exclusive lock on ``DIRECTORY/.lock``.

    Parameters
    ----------
    directory : str or Path
        The run directory. It must exist unless ``create`` is true.
    timeout : float or None
        Seconds to wait for another holder; 0 = try once; None = wait forever.
    create : bool
        Create ``directory`` if it is missing. A directory holding nothing but the lock
        file when the lock is released loses the lock file, and the directory too if it
        was created here: a failed ``ads loop`` start leaves nothing behind.
    command : str
        Written into the lock file beside the pid, for the waiter's message.

    Use as a context manager: ``with RunLock(run_dir, timeout=5): ...``.
    """

    def __init__(self, directory, *, timeout: float | None = DEFAULT_TIMEOUT, create: bool = False, command: str = ""):
        self.directory = Path(directory)
        self.timeout = timeout
        self.create = create
        self.command = command

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def _key(self) -> str:
        return os.path.abspath(self.path)

    def acquire(self) -> RunLock:
        deadline = None if self.timeout is None else time.monotonic() + max(0.0, float(self.timeout))
        with _registry:
            entry = _entries.setdefault(self._key(), _Entry())
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not entry.thread_lock.acquire(timeout=wait):
            raise LockError(f"run directory {str(self.directory)!r} is in use by another thread of this process "
                            f"(pid {os.getpid()}); waited {self.timeout:g} s.")
        if entry.depth > 0:  # this thread holds it already
            entry.depth += 1
            return self
        try:
            self._lock_file(entry, deadline)
        except BaseException:
            entry.thread_lock.release()
            raise
        entry.depth = 1
        return self

    def _lock_file(self, entry: _Entry, deadline: float | None) -> None:
        created = False
        if not self.directory.is_dir():
            if not self.create:
                raise LockError(f"run directory {str(self.directory)!r} does not exist.")
            try:
                self.directory.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass
            except OSError as e:
                raise LockError(f"cannot create run directory {str(self.directory)!r} ({e.strerror}).") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise LockError(f"cannot open the lock {str(self.path)!r} ({e.strerror}).") from None
            try:
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise LockError(
                                    f"run directory {str(self.directory)!r} is in use by another ads process "
                                    f"({_holder(self.path)}); waited {self.timeout:g} s. Wait for it to finish, or pass "
                                    f"--lock-timeout SECONDS to wait longer.") from None
                            time.sleep(0.05)
                # The holder we waited for may have removed the file (a failed start): lock the file
                # that is there now, not an unlinked one.
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
                if not self.directory.is_dir():
                    if not self.create:
                        raise LockError(f"run directory {str(self.directory)!r} was removed.")
                    self.directory.mkdir(parents=True, exist_ok=True)
                    created = True
            except BaseException:
                try:
                    os.close(fd)
                except OSError:
                    pass
                raise
        info = {"pid": os.getpid(), "command": self.command, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        entry.fd = fd
        entry.created_dir = created

    def release(self) -> None:
        with _registry:
            entry = _entries.get(self._key())
        if entry is None or entry.depth == 0:
            return
        entry.depth -= 1
        if entry.depth == 0:
            fd, entry.fd = entry.fd, None
            try:
                if {p.name for p in self.directory.iterdir()} == {LOCK_NAME}:  # no run here (a failed start)
                    self.path.unlink()  # before unlocking: a waiter then locks a new file, not this one
                    if entry.created_dir:
                        self.directory.rmdir()
                else:
                    os.ftruncate(fd, 0)
            except OSError:
                pass
            finally:
                entry.created_dir = False
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        entry.thread_lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["RunLock", "LOCK_NAME", "DEFAULT_TIMEOUT"]
