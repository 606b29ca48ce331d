"""Where qscope keeps converted models, corpora and caches, and how files are written safely."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def qscope_home() -> Path:
    """Root of qscope's cache (`QSCOPE_HOME`, default `~/.cache/qscope`)."""
    return Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to `final`; move it into place only if the block succeeds.

    Readers never see a half-written file: a crash leaves at most a `.tmp-*` sibling, never `final`.
    Works for files and directories (the block may create either at the yielded path).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent)) / (final.name + suffix)
    try:
        yield tmp
        _normal_permissions(tmp)
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _normal_permissions(path: Path) -> None:
    # mkdtemp makes 0700 directories and some writers (safetensors) 0600 files; published outputs get the
    # permissions an ordinary write would have had under the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.exists() and not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
