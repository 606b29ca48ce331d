"""`load_sae(spec)`: one entry point for shipped ids, local directories/files and hub ids."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from qscope.errors import QscopeError, SAELoadError
from qscope.sae import formats
from qscope.sae.base import SAE


def shipped_sae_dir() -> Path:
    return Path(str(resources.files("qscope") / "assets" / "saes"))


def shipped_sae_ids() -> list[str]:
    root = shipped_sae_dir()
    return sorted(p.name for p in root.iterdir() if (p / formats.CFG).exists()) if root.is_dir() else []


DEFAULT_SAE_ID = "smollm2-135m-l15"
"""The SAE shipped for the embedded default model (see qscope/assets/saes/<id>/README.md)."""

SHIPPED_SAE_FOR_MODEL = {"smollm2-135m": DEFAULT_SAE_ID, "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-l12"}
"""The shipped SAE each embedded model uses when no SAE is named (`--model qwen2.5-coder-0.5b` alone)."""


def default_sae_id(model: str | None = None) -> str:
    """The shipped SAE for `model` (any of its names: embedded name, hub id, converted local copy); None → default.

    A model without a shipped SAE gets the default SAE, so that the model check that follows
    (`qscope.models.model_for_sae`) refuses the pair with its explanation, or accepts it when the caller allowed a
    mismatch (a renamed copy or fine-tune of the default model).
    """
    if model is not None:
        from qscope.models.match import model_aliases

        aliases = model_aliases(str(model))
        for name, sae_id in SHIPPED_SAE_FOR_MODEL.items():
            if name in aliases and (shipped_sae_dir() / sae_id / formats.CFG).exists():
                return sae_id
    return DEFAULT_SAE_ID


def load_sae(
    spec: str | os.PathLike | None = None, layer: int | None = None, k: int | None = None, model: str | None = None
) -> SAE:
    """Load an SAE.

    spec: a shipped id (default: the shipped SAE of `model`, see `default_sae_id`; with no model `DEFAULT_SAE_ID`),
    a directory in SAELens or sparsify layout, a Qwen-Scope
    `layer{n}.sae.pt` file or a directory holding them (pass `layer`), or a Qwen-Scope hub id such as
    `Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50`, optionally pinned as `...@<branch | tag | commit>` (downloaded when
    online; with HF_HUB_OFFLINE=1 read from the local hub cache only; pass `layer`).
    k: TopK k for Qwen-Scope files whose directory name does not carry it.
    """
    spec = str(spec) if spec is not None else default_sae_id(model)
    shipped = shipped_sae_dir() / spec
    if "/" not in spec and (shipped / formats.CFG).exists():
        return _load_dir(shipped, layer, k, spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(path, k, repo_name=path.parent.name)
    if path.is_dir():
        return _load_dir(path, layer, k, spec)
    hub = _hub_spec(spec)
    if hub is not None:
        return _load_hub(*hub, layer, k)
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


def _hub_spec(spec: str) -> tuple[str, str | None] | None:
    """`org/SAE-repo[@revision]` → (repo, revision); None for anything that is not a hub id."""
    from qscope.models.resolve import split_hub_spec

    if spec.startswith((".", "/", "~")) or formats.QWEN_SCOPE_FILE.search(spec.partition("@")[0]):
        return None
    try:
        return split_hub_spec(spec)
    except QscopeError as exc:
        raise SAELoadError(str(exc)) from exc


def _load_hub(repo: str, revision: str | None, layer: int | None, k: int | None) -> SAE:
    from qscope.models.hub import hub_file

    name = f"{repo}@{revision}" if revision else repo
    if layer is None:
        raise SAELoadError(f"{name}: hub SAEs hold one file per layer; pass layer=")
    # Offline (HF_HUB_OFFLINE=1) this reads the local hub cache only and says so when the file is not there.
    file = hub_file(repo, f"layer{layer}.sae.pt", revision, SAELoadError)
    sae = formats.load_qwen_scope(Path(file), k or formats.k_from_repo_name(repo), repo)
    if revision:
        # Pinned loads are told apart in signatures and provenance; the snapshot folder is the resolved commit.
        sae.cfg.sae_id = f"{repo}@{revision}/layer{layer}"
        sae.cfg.metadata["revision"] = revision
    sae.cfg.metadata["hub_commit"] = Path(file).parent.name
    return sae
