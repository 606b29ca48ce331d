"""`load_sae(spec)`: one entry point for shipped ids, local directories/files and hub ids."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from qscope.errors import SAELoadError
from qscope.sae import formats
from qscope.sae.base import SAE


def shipped_sae_dir() -> Path:
    return Path(str(resources.files("qscope") / "assets" / "saes"))


def shipped_sae_ids() -> list[str]:
    root = shipped_sae_dir()
    return sorted(p.name for p in root.iterdir() if (p / formats.CFG).exists()) if root.is_dir() else []


DEFAULT_SAE_ID = "smollm2-135m-l15"
"""The SAE shipped for the embedded default model (see qscope/assets/saes/<id>/README.md)."""


def load_sae(spec: str | os.PathLike | None = None, layer: int | None = None, k: int | None = None) -> SAE:
    """Load an SAE.

    spec: a shipped id (default: `DEFAULT_SAE_ID`), a directory in SAELens or sparsify layout, a Qwen-Scope
    `layer{n}.sae.pt` file or a directory holding them (pass `layer`), or a Qwen-Scope hub id such as
    `Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50` (downloaded when online; pass `layer`).
    k: TopK k for Qwen-Scope files whose directory name does not carry it.
    """
    spec = str(spec) if spec is not None else DEFAULT_SAE_ID
    shipped = shipped_sae_dir() / spec
    if "/" not in spec and (shipped / formats.CFG).exists():
        return _load_dir(shipped, layer, k, spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(path, k, repo_name=path.parent.name)
    if path.is_dir():
        return _load_dir(path, layer, k, spec)
    if formats.QWEN_SCOPE_FILE.search(spec) is None and spec.count("/") == 1 and not spec.startswith((".", "/")):
        return _load_hub(spec, layer, k)
    known = ", ".join(shipped_sae_ids()) or "none shipped yet"
    raise SAELoadError(
        f"unknown SAE {spec!r}: not a shipped id ({known}), not an existing file or directory, not a hub id"
    )


def _load_file(path: Path, k: int | None, repo_name: str | None) -> SAE:
    if formats.QWEN_SCOPE_FILE.search(path.name) or path.suffix == ".pt":
        return formats.load_qwen_scope(path, k or formats.k_from_repo_name(repo_name or ""), repo_name)
    if path.name in (formats.SAELENS_WEIGHTS, formats.SPARSIFY_WEIGHTS, formats.CFG):
        return _load_dir(path.parent, None, k, str(path.parent))
    raise SAELoadError(f"{path}: unrecognized SAE file (expected layer<n>.sae.pt or a cfg.json directory)")


def _load_dir(path: Path, layer: int | None, k: int | None, spec: str) -> SAE:
    if (path / formats.CFG).exists() and (path / formats.SAELENS_WEIGHTS).exists():
        return formats.load_saelens(path)
    if (path / formats.CFG).exists() and (path / formats.SPARSIFY_WEIGHTS).exists():
        return formats.load_sparsify(path)
    qwen_files = sorted(path.glob("layer*.sae.pt"))
    if qwen_files:
        if layer is None:
            if len(qwen_files) > 1:
                raise SAELoadError(f"{path} holds SAEs for several layers ({len(qwen_files)} files): pass layer=")
            return _load_file(qwen_files[0], k, path.name)
        file = path / f"layer{layer}.sae.pt"
        if not file.exists():
            raise SAELoadError(f"{path}: no SAE for layer {layer} (have {[f.name for f in qwen_files]})")
        return _load_file(file, k, path.name)
    # sparsify trains one sub-directory per hook point, e.g. layers.15/
    subdirs = [d for d in path.iterdir() if d.is_dir() and (d / formats.CFG).exists()]
    if subdirs:
        if layer is None:
            raise SAELoadError(f"{path} holds SAEs for {[d.name for d in subdirs]}: pass layer=")
        for d in subdirs:
            if formats._layer_from_hook_name(d.name) == layer:
                return _load_dir(d, None, k, str(d))
        raise SAELoadError(f"{path}: no SAE sub-directory for layer {layer} (have {[d.name for d in subdirs]})")
    raise SAELoadError(f"{spec}: directory has no SAE (expected cfg.json + weights, or layer<n>.sae.pt files)")


def _load_hub(repo: str, layer: int | None, k: int | None) -> SAE:
    if layer is None:
        raise SAELoadError(f"{repo}: hub SAEs hold one file per layer; pass layer=")
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(repo, f"layer{layer}.sae.pt")
    except Exception as exc:
        raise SAELoadError(
            f"could not fetch {repo}/layer{layer}.sae.pt from the Hugging Face hub ({type(exc).__name__}). "
            "Offline? Download the repo elsewhere and pass its local directory instead."
        ) from exc
    return formats.load_qwen_scope(Path(file), k or formats.k_from_repo_name(repo), repo)
