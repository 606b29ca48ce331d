"""Where an SAE's card and statistics live: the directory of its weights."""

from __future__ import annotations

from pathlib import Path

from qscope.errors import SAELoadError


def sae_directory(spec) -> Path:
    """Directory holding the SAE named by `spec`: a shipped id, an SAE directory, or a weights file's folder."""
    from qscope.sae.loading import shipped_sae_dir

    text = str(spec)
    shipped = shipped_sae_dir() / text
    if "/" not in text and shipped.is_dir():
        return shipped
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise SAELoadError(
        f"{text!r} is not a shipped SAE id or a local SAE directory/file: its card and statistics have no home"
    )
