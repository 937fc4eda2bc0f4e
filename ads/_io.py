"""Atomic writes: every file and store ``ads`` writes goes to a temporary sibling first and
is renamed into place, so a failure, an interrupt or a kill never leaves a half-written
output.

- Temporary siblings are named ``.NAME.tmp-PID-XXXXXXXX`` (and ``.NAME.old-PID-XXXXXXXX``
  for a directory being replaced). A failed or interrupted write removes its own; one
  killed with SIGKILL cannot, so the next write to the same target removes every such
  sibling whose process is gone (and those of ads versions that did not record a pid),
  and logs it.
- Only a regular file is replaced by a file and only a directory by a directory: an
  existing device node, FIFO, socket or symbolic link at the target is refused.
- A missing parent folder is created (and logged).
- Errors name the user's path, never the temporary one, in one line
  (:class:`~ads.errors.OutputError`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ads.errors import OutputError

logger = logging.getLogger(__name__)

#: errno values that mean "the disk (or a quota or limit) cannot take the output".
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link", stat.S_IFREG: "a regular file"}


def _name(what: str, path) -> str:
    return f"{what} {str(path)!r}" if what else repr(str(path))


def check_target(path, kind: str = "file", what: str = "") -> None:
    """Raise :class:`OutputError` unless ``path`` may be written as ``kind``.

    ``path`` must be absent or be a ``kind`` ("file": a regular file, "dir": a directory;
    symbolic links are refused either way), and its nearest existing ancestor must be a
    directory. ``what`` names the output in messages ("store", "file", ...).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise OutputError(f"cannot write {_name(what, path)}: {e.strerror}.") from None
    if st is not None:
        ok = stat.S_ISREG(st.st_mode) if kind == "file" else stat.S_ISDIR(st.st_mode)
        if not ok:
            found = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
            expected = "a regular file" if kind == "file" else "a directory"
            raise OutputError(f"cannot write {_name(what, path)}: it exists and is {found}; ads replaces only "
                              f"{expected} there (choose another path).")
    anc = path.parent
    while not anc.exists() and anc != anc.parent and not anc.is_symlink():
        anc = anc.parent
    if (anc.exists() or anc.is_symlink()) and not anc.is_dir():
        raise OutputError(f"cannot write {_name(what, path)}: {str(anc)!r} is not a directory.")


def _make_parent(path: Path, kind: str, what: str) -> None:
    parent = path.parent
    if parent.is_dir():
        return
    check_target(path, kind, what)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {_name(what, path)}: cannot create the folder {str(parent)!r} ({e.strerror}).") from None
    logger.info("created directory %s", parent)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path, *, recheck: bool = False) -> None:
    """Remove a file or a directory tree. With ``recheck``, look again a few times: an
    interrupted writer's last in-flight chunk may land just after the first removal."""
    for _ in range(10 if recheck else 1):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                return
        if not recheck:
            return
        time.sleep(0.02)
        if not os.path.lexists(p):
            return


def remove_stale(path) -> list[Path]:
    """Remove the temporary siblings of ``path`` that killed writes left behind.

    A sibling ``.NAME.tmp-PID-*`` or ``.NAME.old-PID-*`` is removed when process PID is no
    longer running (on this machine), or when its name carries no pid (written by an ads
    older than this rule). Returns what was removed.
    """
    path = Path(path)
    parent = path.parent
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for prefix in (f".{path.name}.tmp-", f".{path.name}.old-"):
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            head, sep, _ = entry.name[len(prefix):].partition("-")
            if head.isdigit() and (sep or prefix.endswith(".old-")) and _alive(int(head)):
                continue  # a write in progress (or the pid was reused: left for later)
            p = Path(entry.path)
            _remove(p)
            removed.append(p)
            logger.info("removed %s, left by an interrupted write of %s", p, path)
    return removed


def _is_about(e: OSError, tmp: Path) -> bool:
    """Whether an OSError concerns the temporary output (and so the user's path)."""
    if e.errno in _SPACE_ERRNOS:
        return True
    return any(f is not None and str(f).startswith(str(tmp)) for f in (e.filename, getattr(e, "filename2", None)))


def _output_error(e: OSError, path: Path, what: str) -> OutputError:
    return OutputError(f"cannot write {_name(what, path)}: {e.strerror or e}.")


@contextmanager
def atomic_dir(path, *, what: str = "directory"):
    """Yield a temporary sibling directory of ``path``; on success, rename it to ``path``
    (an existing directory there is replaced); on failure or interrupt, remove it.

    An ``OSError`` about the temporary directory (a full disk, a file-size limit) becomes
    an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    check_target(path, "dir", what)
    _make_parent(path, "dir", what)
    remove_stale(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    except OSError as e:
        raise _output_error(e, path, what) from None
    try:
        yield tmp
        replace_dir(tmp, path, what=what)
    except BaseException as e:
        _remove(tmp, recheck=True)
        if isinstance(e, OSError) and _is_about(e, tmp):
            raise _output_error(e, path, what) from None
        raise


def replace_dir(src: Path, dst: Path, *, what: str = "directory") -> None:
    """Rename ``src`` to ``dst``; an existing directory ``dst`` is moved aside first, then
    removed (anything else at ``dst`` is refused)."""
    src, dst = Path(src), Path(dst)
    check_target(dst, "dir", what)
    if not os.path.lexists(dst):
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-{os.getpid()}-", dir=dst.parent))
    os.replace(dst, old)  # a directory may be renamed onto an empty one
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    _remove(old)


@contextmanager
def atomic_file(path, *, what: str = ""):
    """Yield a temporary file path beside ``path`` (same suffix); on success, rename it to
    ``path`` (only a regular file there is replaced); on failure or interrupt, remove it."""
    path = Path(path)
    check_target(path, "file", what)
    _make_parent(path, "file", what)
    remove_stale(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise _output_error(e, path, what) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        check_target(path, "file", what)  # again, right before the rename
        os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp, recheck=True)
        if isinstance(e, OSError) and _is_about(e, tmp):
            raise _output_error(e, path, what) from None
        raise


def atomic_write_text(path, text: str, *, what: str = "") -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_file(path, what=what) as tmp:
        tmp.write_text(text)
    return Path(path)


class _Interrupt:
    """The state of :func:`deferred_interrupt`: whether a SIGINT arrived."""

    def __init__(self):
        self.pending = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a SIGINT arrived (call between writes)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


@contextmanager
def deferred_interrupt():
    """Record SIGINT inside the block instead of raising it mid-write.

    ``check()`` raises ``KeyboardInterrupt`` at a point where no write is half done, and
    leaving the block raises it if one is pending. Zarr writes run on zarr's own event
    loop; an interrupt that lands inside one leaves its tasks writing (into a temporary
    directory being removed) and prints hundreds of lines when the interpreter exits.
    Outside the main thread, or when SIGINT has a handler other than Python's default,
    nothing is deferred.
    """
    state = _Interrupt()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield state
        return

    def _record(signum, frame):
        state.pending = True

    previous = signal.signal(signal.SIGINT, _record)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
    state.check()
