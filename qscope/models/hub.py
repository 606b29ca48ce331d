"""Hugging Face hub access for models and SAEs: pinned revisions, offline mode honoured, clear errors.

Every hub load goes through here so that `org/name@revision` means the same for models and SAEs, and
`HF_HUB_OFFLINE=1` (read when called, not when imported) never reaches the network: what is not in the local
hub cache fails with a message that says so and names the revision.
"""

from __future__ import annotations

import os
from pathlib import Path

from qscope.errors import ModelLoadError, QscopeError

# What a model directory needs: config, tokenizer, chat template, generation config, weights. Skipping the rest
# keeps ONNX / GGUF / framework duplicates some repos carry from being downloaded.
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "tokenizer*"]
LEGACY_WEIGHT_PATTERNS = ["*.bin"]
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set now."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The hub cache as the environment names it now (`HF_HUB_CACHE`, else `HF_HOME/hub`, else the default)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hub_model_dir(repo: str, revision: str | None = None) -> Path:
    """Local snapshot directory of a hub model at `revision` (default: the repo's main branch)."""
    path = Path(_fetch(repo, revision, ModelLoadError, what="model", allow_patterns=MODEL_PATTERNS))
    if not any(path.glob("*.safetensors")) and not hub_offline():
        # Older repos ship only pytorch_model*.bin; fetch those too rather than a model without weights.
        path = Path(
            _fetch(repo, revision, ModelLoadError, what="model", allow_patterns=MODEL_PATTERNS + LEGACY_WEIGHT_PATTERNS)
        )
    if not (path / "config.json").exists():
        raise ModelLoadError(f"{_name(repo, revision)}: the snapshot at {path} has no config.json: not a model")
    return path


def hub_file(repo: str, filename: str, revision: str | None, error: type[QscopeError]) -> Path:
    """One file of a hub repo at `revision`, from the local cache when offline."""
    return Path(_fetch(repo, revision, error, what=filename, filename=filename))


def _fetch(
    repo: str,
    revision: str | None,
    error: type[QscopeError],
    what: str,
    filename: str | None = None,
    allow_patterns: list[str] | None = None,
) -> str:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise error(f"loading {repo} from the hub needs huggingface_hub: {exc}") from exc
    offline = hub_offline()
    kw = dict(revision=revision, cache_dir=hub_cache_dir(), local_files_only=offline)
    try:
        if filename is not None:
            return hf_hub_download(repo, filename, **kw)
        return snapshot_download(repo, allow_patterns=allow_patterns, **kw)
    except Exception as exc:  # noqa: BLE001 - hub errors have many types; each becomes one clear message
        raise error(_explain(exc, repo, revision, what, offline)) from exc


def _explain(exc: Exception, repo: str, revision: str | None, what: str, offline: bool) -> str:
    kind = type(exc).__name__
    name = _name(repo, revision)
    if offline or kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return (
            f"{name}: {what} is not in the local hub cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is set, "
            "so nothing was downloaded. Fetch it on a machine with access (same revision) and copy the cache, "
            "or pass a local directory instead."
        )
    if kind == "RevisionNotFoundError":
        return f"{name}: revision {revision!r} does not exist (use a branch, tag or commit of {repo})"
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return f"{name}: repository not found or not accessible ({kind}; a gated repo needs `hf auth login`)"
    if kind in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return f"{name}: has no file {what}"
    return f"could not fetch {what} of {name} from the Hugging Face hub ({kind}: {exc})"


def _name(repo: str, revision: str | None) -> str:
    return f"{repo}@{revision}" if revision else repo
