"""Reading and writing SAE weights: SAELens (native), sparsify and Qwen-Scope layouts.

| format    | files                                   | orientation                              |
|-----------|-----------------------------------------|------------------------------------------|
| SAELens   | cfg.json + sae_weights.safetensors      | W_enc [d_in, d_sae], W_dec [d_sae, d_in] |
| sparsify  | cfg.json + sae.safetensors              | encoder.weight [d_sae, d_in], W_dec [d_sae, d_in] |
| Qwen-Scope| layer{n}.sae.pt (torch, tensors only)   | W_enc [d_sae, d_in], W_dec [d_in, d_sae] |
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qscope.errors import SAELoadError
from qscope.paths import atomic_path
from qscope.sae.base import SAE, SAEConfig

SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
CFG = "cfg.json"

# SAELens architecture names → ours. (SAELens "standard" is the L1/ReLU SAE.)
_SAELENS_ARCH = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "topk"}


def _load_tensors(sae: SAE, tensors: dict[str, torch.Tensor], source: str) -> SAE:
    expected = dict(sae.state_dict())
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise SAELoadError(f"{source}: missing tensors {missing} (found {sorted(tensors)})")
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise SAELoadError(
                f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, expected {tuple(ref.shape)}"
            )
    sae.load_state_dict({k: tensors[k].to(torch.float32) for k in expected})
    return sae


# --- SAELens (native) -------------------------------------------------------------------------------
def save_saelens(sae: SAE, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write `sae` to directory `path` in the SAELens layout, atomically (the whole directory appears at once).

    Other files and sub-directories already in `path` are kept."""
    path = Path(path)
    dtype = dtype or torch.float32
    cfg = sae.cfg.to_dict()
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    cfg["hook_name"] = f"blocks.{sae.cfg.hook_layer}.hook_resid_post" if sae.cfg.hook_layer is not None else None
    cfg["normalize_activations"] = "none"  # any dataset-wise input scaling is folded into the weights at export
    # keep_existing: whatever lives next to the weights (model card, feature statistics, dashboards, a user's
    # sub-directories) survives a rewrite; only cfg.json and the weights are replaced.
    with atomic_path(path, keep_existing=True) as tmp:
        tmp.mkdir()
        tensors = {k: v.detach().to(dtype).contiguous() for k, v in sae.state_dict().items()}
        save_file(tensors, tmp / SAELENS_WEIGHTS, metadata={"format": "saelens", "qscope": "1"})
        (tmp / CFG).write_text(json.dumps(cfg, indent=2))
    return path


def load_saelens(path: Path) -> SAE:
    raw = json.loads((path / CFG).read_text())
    arch = _SAELENS_ARCH.get(raw.get("architecture", "standard"))
    if arch is None:
        raise SAELoadError(f"{path}: unsupported SAELens architecture {raw.get('architecture')!r}")
    meta = raw.get("metadata") or {}
    cfg = SAEConfig.from_dict(
        {
            **raw,
            "architecture": arch,
            "k": raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k"),
            "apply_b_dec_to_input": bool(raw.get("apply_b_dec_to_input", False)),
            "model_name": raw.get("model_name") or meta.get("model_name"),
            "hook_layer": raw.get("hook_layer", _layer_from_hook_name(raw.get("hook_name") or meta.get("hook_name"))),
            "sae_id": raw.get("sae_id") or path.name,
            "dtype": "float32",
        }
    )
    tensors = load_file(path / SAELENS_WEIGHTS)
    if arch == "jumprelu" and "threshold" not in tensors and "log_threshold" in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    return _load_tensors(SAE.from_config(cfg), tensors, str(path))


def _layer_from_hook_name(hook_name: str | None) -> int | None:
    m = re.search(r"(?:blocks|layers)\.(\d+)", hook_name or "")
    return int(m.group(1)) if m else None


# --- sparsify ---------------------------------------------------------------------------------------
def load_sparsify(path: Path) -> SAE:
    raw = json.loads((path / CFG).read_text())
    tensors = load_file(path / SPARSIFY_WEIGHTS)
    if "encoder.weight" not in tensors:
        raise SAELoadError(f"{path}: not a sparsify SAE (no encoder.weight in {SPARSIFY_WEIGHTS})")
    if raw.get("transcode") or "W_skip" in tensors:
        raise SAELoadError(f"{path}: sparsify transcoders / skip connections are not supported")
    d_sae, d_in = tensors["encoder.weight"].shape
    cfg = SAEConfig(
        architecture="topk",
        d_in=int(raw.get("d_in", d_in)),
        d_sae=int(d_sae),
        k=int(raw["k"]),
        apply_b_dec_to_input=True,  # sparsify encodes (x - b_dec)
        hook_layer=_layer_from_hook_name(path.name),
        sae_id=f"sparsify/{path.name}",
        metadata={"source_format": "sparsify"},
    )
    ours = {
        "W_enc": tensors["encoder.weight"].T,
        "b_enc": tensors["encoder.bias"],
        "W_dec": tensors["W_dec"],
        "b_dec": tensors["b_dec"],
    }
    return _load_tensors(SAE.from_config(cfg), ours, str(path))


# --- Qwen-Scope -------------------------------------------------------------------------------------
QWEN_SCOPE_FILE = re.compile(r"layer(\d+)\.sae\.pt$")


def k_from_repo_name(name: str) -> int:
    """`Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50` → 50 (the TopK k is only recorded in the repo name)."""
    m = re.search(r"L0[_-](\d+)", name)
    if not m:
        raise SAELoadError(f"cannot read TopK k from {name!r}: expected '...-L0_<k>' as in Qwen-Scope repo names")
    return int(m.group(1))


def load_qwen_scope(file: Path, k: int, repo_name: str | None = None) -> SAE:
    """Load a Qwen-Scope `layer{n}.sae.pt`.

    Qwen-Scope encodes `topk(x @ W_enc.T + b_enc)` and decodes `acts @ W_dec.T + b_dec`: b_dec is *not*
    subtracted from the input, so apply_b_dec_to_input=False (checked numerically in the tests).
    """
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled objects other than tensors/containers
        raise SAELoadError(
            f"{file}: refusing to load: torch.load(weights_only=True) failed ({type(exc).__name__}: {exc}). "
            "The file contains non-tensor objects; only plain tensor state dicts are accepted."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SAELoadError(f"{file}: expected a dict of tensors (W_enc, W_dec, b_enc, b_dec)")
    missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(state)
    if missing:
        raise SAELoadError(f"{file}: missing Qwen-Scope keys {sorted(missing)}; found {sorted(state)}")
    d_sae, d_in = state["W_enc"].shape
    if tuple(state["W_dec"].shape) != (d_in, d_sae):
        raise SAELoadError(
            f"{file}: W_dec has shape {tuple(state['W_dec'].shape)}, expected (d_model, d_sae)=({d_in}, {d_sae})"
        )
    layer = int(QWEN_SCOPE_FILE.search(file.name).group(1)) if QWEN_SCOPE_FILE.search(file.name) else None
    cfg = SAEConfig(
        architecture="topk",
        d_in=int(d_in),
        d_sae=int(d_sae),
        k=k,
        apply_b_dec_to_input=False,
        model_name=_qwen_scope_model(repo_name),
        hook_layer=layer,
        sae_id=f"{repo_name or file.parent.name}/layer{layer}",
        metadata={"source_format": "qwen-scope"},
    )
    ours = {"W_enc": state["W_enc"].T, "b_enc": state["b_enc"], "W_dec": state["W_dec"].T, "b_dec": state["b_dec"]}
    return _load_tensors(SAE.from_config(cfg), ours, str(file))


def save_qwen_scope(
    sae: SAE, directory: str | Path, layer: int | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write `sae` as a Qwen-Scope `layer{n}.sae.pt` in `directory` (atomically); returns the file.

    Qwen-Scope files hold four tensors and nothing else: W_enc (d_sae, d_model), W_dec (d_model, d_sae), b_enc,
    b_dec, with `topk(x @ W_enc.T + b_enc)` as the encoder. Its k is not stored: the reader takes it from the
    repository name (`...-L0_<k>`), so name `directory` that way (`qwen_scope_repo_name` builds one) or pass k when
    loading. Our SAEs subtract b_dec before encoding; that is folded into b_enc (x - b_dec) @ W_enc + b_enc =
    x @ W_enc + (b_enc - b_dec @ W_enc), so the file encodes to the same features. Only TopK SAEs have this
    format: a JumpReLU / ReLU encoder cannot be written as a TopK with no threshold.
    """
    if sae.cfg.architecture != "topk" or not sae.cfg.k:
        raise SAELoadError(
            f"SAE {sae.sae_id} is {sae.cfg.architecture!r}: the Qwen-Scope format only holds TopK SAEs (no threshold "
            "or activation function is stored); export it in the SAELens layout instead"
        )
    layer = sae.cfg.hook_layer if layer is None else layer
    if layer is None:
        raise SAELoadError(f"SAE {sae.sae_id} records no hook layer: pass layer= (the file is named layer<n>.sae.pt)")
    dtype = dtype or torch.float32
    with torch.no_grad():
        b_enc = sae.b_enc - sae.b_dec @ sae.W_enc if sae.cfg.apply_b_dec_to_input else sae.b_enc
        state = {
            "W_enc": sae.W_enc.T,
            "W_dec": sae.W_dec.T,
            "b_enc": b_enc,
            "b_dec": sae.b_dec,
        }
        state = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in state.items()}
    file = Path(directory) / f"layer{int(layer)}.sae.pt"
    with atomic_path(file) as tmp:
        torch.save(state, tmp)
    return file


def qwen_scope_repo_name(model: str, d_sae: int, k: int) -> str:
    """Qwen-Scope's naming convention, e.g. ("Qwen/Qwen3-1.7B-Base", 32768, 50) → "SAE-Res-Qwen3-1.7B-Base-W32K-L0_50".

    Width is written in units of 1024 (W32K = 32768 latents) when it divides, else as the plain number of latents.
    """
    base = model.rstrip("/").rsplit("/", 1)[-1]
    width = f"{d_sae // 1024}K" if d_sae % 1024 == 0 else str(d_sae)
    return f"SAE-Res-{base}-W{width}-L0_{int(k)}"


def _qwen_scope_model(repo_name: str | None) -> str | None:
    # "Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50" → "Qwen/Qwen3-1.7B-Base"
    m = re.search(r"SAE-Res-(.+?)-W\d+K?(?:-|$)", repo_name or "")
    return f"Qwen/{m.group(1)}" if m else None
