"""Where qscope keeps converted models, corpora and caches, and how files and directories are replaced safely."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path


def qscope_home() -> Path:
    """Root of qscope's cache (`QSCOPE_HOME`, default `~/.cache/qscope`)."""
    return Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "", keep_existing: bool = False):
    """Yield a temporary path next to `final`; put it in place only if the block succeeds.

    Files and directories alike (the block may create either at the yielded path). At every moment `final` is
    the old version or the complete new one: a crash leaves at most a `.tmp-*` sibling, never a half-written or
    missing `final`. Everything written is fsynced before it is published, and the parent directory after.
    An existing directory is exchanged with the new one in one step (Linux `renameat2(RENAME_EXCHANGE)`; on file
    systems without it the old one is renamed aside first, then the new one in). The old version is deleted
    only once the new one is in place. Two processes replacing the same directory at once both succeed (the
    last one wins) instead of failing with ENOTEMPTY.

    keep_existing: for directories, carry over every entry of the existing `final` that the new version does not
    write itself (recursively, hard-linked where possible so nothing is copied): files that live next to ours,
    such as a model card, feature statistics or a user's sub-directory, survive a rewrite.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    tmp = staging / (final.name + suffix)
    try:
        yield tmp
        if not tmp.exists() and not tmp.is_symlink():
            raise FileNotFoundError(f"atomic_path: the block wrote nothing at {tmp}")
        _normal_permissions(tmp)  # before the carry-over: entries kept from the old version keep their modes
        if keep_existing and tmp.is_dir() and final.is_dir():
            _carry_over(final, tmp)
        _fsync_tree(tmp)
        _publish(tmp, final, staging)
        _fsync_dir(final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(tmp: Path, final: Path, staging: Path) -> None:
    if not tmp.is_dir():
        if final.is_dir() and not final.is_symlink():
            raise IsADirectoryError(errno.EISDIR, f"cannot replace directory {final} with a file", str(final))
        os.replace(tmp, final)  # atomic for files
        return
    # Directories: os.replace cannot overwrite a non-empty one. Exchange, or move the old one aside and retry;
    # a concurrent writer may put its own version in place between our steps, hence the loop.
    for attempt in range(1000):
        try:
            os.rename(tmp, final)  # succeeds when `final` is absent (or an empty directory)
            return
        except OSError as exc:
            if exc.errno not in _TAKEN:
                raise
        if _exchange(tmp, final):
            return  # the old version now sits at `tmp`, inside `staging`, and goes with it
        aside = staging / f".old-{attempt}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, final)
            return
        except OSError as exc:
            # Put the old version back (unless another writer's new one is already there): `staging`, where it
            # sits now, is deleted on the way out.
            with contextlib.suppress(OSError):
                os.rename(aside, final)
            if exc.errno not in _TAKEN:
                raise
    raise OSError(errno.EBUSY, f"could not replace {final}: other writers keep replacing it", str(final))


_TAKEN = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)  # `final` exists (another version)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_exchange_unsupported = False


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False when unavailable or `b` vanished meanwhile."""
    global _exchange_unsupported
    if _exchange_unsupported:
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        _exchange_unsupported = True
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOENT:
        return False  # `final` was moved away by another writer: plain rename again
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        _exchange_unsupported = True  # kernel or file system without RENAME_EXCHANGE
        return False
    raise OSError(err, os.strerror(err), str(b))


def _carry_over(old: Path, new: Path) -> None:
    for entry in old.iterdir():
        target = new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if not target.exists():
                shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
            elif target.is_dir() and not target.is_symlink():
                _carry_over(entry, target)
        elif not target.exists() and not target.is_symlink():
            if entry.is_symlink():
                os.symlink(os.readlink(entry), target)
            else:
                _link_or_copy(entry, target)


def _link_or_copy(src, dst) -> None:
    # A hard link shares the bytes (the old version is deleted right after the swap, so nothing is duplicated);
    # file systems that refuse links get a copy.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_tree(path: Path) -> None:
    if path.is_symlink():
        return
    if path.is_file():
        _fsync_file(path)
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            if not p.is_symlink():
                _fsync_file(p)
        _fsync_dir(Path(root))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # platforms that cannot open directories have no directory fsync either
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems (e.g. certain network mounts) refuse directory fsync
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive advisory lock on `path` (created if needed) for the block; waits for other holders.

    The lock dies with the process, so a crashed holder never blocks later runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _normal_permissions(path: Path) -> None:
    # mkdtemp makes 0700 directories and some writers (safetensors) 0600 files; published outputs get the
    # permissions an ordinary write would have had under the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.exists() and not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
