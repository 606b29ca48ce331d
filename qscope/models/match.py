"""Which SAE, model and layer a caller reads with: the SAE's own model and layer by default, never silently another.

An SAE decodes one model's residual stream. On another model of the same width it loads and runs but its features
mean nothing, so an explicit model that differs from the SAE's recorded one is an error unless the caller says it
is intended (`allow_model_mismatch`, `--allow-model-mismatch`), e.g. a fine-tune or a renamed copy.

`resolve_sae_and_model` is the one owner of that rule: the CLI, the quick-start API, the operators and the
pipeline driver all ask it, so they pick the same model and fail with the same message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qscope.errors import InputError, ShapeMismatchError
from qscope.models.resolve import DEFAULT_MODEL, EMBEDDED_MODELS, split_hub_spec


@dataclass(frozen=True)
class ResolvedSAE:
    """An SAE with the model and layer it is read at (names only: the model is not loaded)."""

    sae: Any
    """The loaded `qscope.sae.SAE`."""
    sae_spec: str
    """How the SAE was named (a shipped id, a path, a hub id): finds its feature statistics, loads it elsewhere."""
    model: str
    """The model spec to load (`model_for_sae`)."""
    layer: int
    """The hook layer (`sae_layer`)."""


def resolve_sae_and_model(
    sae: str | os.PathLike | None = None,
    model: str | None = None,
    layer: int | None = None,
    allow_model_mismatch: bool = False,
) -> ResolvedSAE:
    """The SAE, model and layer to read with: `sae` None is the shipped SAE of `model` (else the default SAE);
    `model` None is the SAE's own model; `layer` None is the SAE's own layer. Loads only the SAE."""
    from qscope.sae import default_sae_id, load_sae

    spec = str(sae) if sae is not None else default_sae_id(model)
    sae_obj = load_sae(spec, layer=layer)
    return ResolvedSAE(sae_obj, spec, model_for_sae(model, sae_obj, allow_model_mismatch), sae_layer(sae_obj, layer))


def sae_layer(sae, layer: int | None = None) -> int:
    """The layer `sae` is read at: `layer` when given, else the one the SAE records."""
    if layer is None:
        layer = sae.cfg.hook_layer
    if layer is None:
        raise InputError(
            f"SAE {sae.sae_id} does not record its hook layer: name it (--layer on the command line, `layer:` in "
            "the `model:` section of a pipeline config, layer= in Python)"
        )
    return int(layer)


def model_for_sae(model: str | None, sae, allow_model_mismatch: bool = False) -> str:
    """The model spec to load for `sae`.

    model None: the SAE's recorded model (`sae.cfg.model_name`; an embedded model's hub id maps to its embedded
    name so it loads offline), or the embedded default when the SAE records none. An explicit `model` must be the
    SAE's recorded model under any of its names (embedded name, hub id with or without @revision, a local copy
    whose config names the hub id, the same path); otherwise `InputError`, unless `allow_model_mismatch`.
    """
    recorded = getattr(sae.cfg, "model_name", None) or None
    if model is None:
        if recorded is None:
            return DEFAULT_MODEL
        return _loadable(recorded, sae)
    if recorded is not None and not allow_model_mismatch and model_aliases(model).isdisjoint(model_aliases(recorded)):
        raise InputError(
            f"SAE {sae.sae_id} was trained on model {recorded!r}, but the model given is {model!r}. An SAE only "
            "reads the model it was trained on (on another one its features mean nothing, even at the same "
            "width). Leave the model out to use the SAE's own, or pass --allow-model-mismatch "
            "(allow_model_mismatch=True) if this is the same model under another name or a fine-tune."
        )
    return model


def check_sae_fits(lm, sae) -> None:
    """Fail before any work when the SAE's input width is not the model's hidden size."""
    if int(sae.d_in) != int(lm.d_model):
        raise ShapeMismatchError(
            f"SAE {sae.sae_id} has d_in={sae.d_in} but {lm.name} has hidden size {lm.d_model}: "
            "they do not belong together"
        )


def model_aliases(spec: str) -> set[str]:
    """Every name under which a model spec is known, without loading, converting or downloading anything."""
    aliases = {spec}
    if spec in EMBEDDED_MODELS:
        aliases.add(EMBEDDED_MODELS[spec].hf_name)
        return aliases
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        aliases.add(os.path.normpath(os.path.abspath(path)))
        recorded = _config_name(path)
        if recorded:
            aliases |= _hub_aliases(recorded)
        return aliases
    hub = split_hub_spec(spec) if "/" in spec else None
    if hub is not None:
        aliases |= _hub_aliases(hub[0])
    return aliases


def _hub_aliases(repo: str) -> set[str]:
    out = {repo}
    out.update(name for name, m in EMBEDDED_MODELS.items() if m.hf_name == repo)
    return out


def _config_name(path: Path) -> str | None:
    # A local copy of a hub model (or our GGUF conversion) records the hub id it came from in config.json.
    config = path / "config.json" if path.is_dir() else None
    if config is None or not config.is_file():
        return None
    try:
        name = json.loads(config.read_text()).get("_name_or_path")
    except (OSError, ValueError):
        return None
    if isinstance(name, str) and split_hub_spec(name) is not None and not Path(name).exists():
        return split_hub_spec(name)[0]
    return None


def _loadable(recorded: str, sae) -> str:
    if recorded in EMBEDDED_MODELS:
        return recorded
    hub = split_hub_spec(recorded) if not Path(recorded).expanduser().exists() else None
    if hub is not None:
        for name, m in EMBEDDED_MODELS.items():
            if m.hf_name == hub[0] and hub[1] is None:
                return name  # the embedded copy of that hub model: loads offline
        return recorded
    if Path(recorded).expanduser().exists():
        return recorded
    raise InputError(
        f"SAE {sae.sae_id} records its model as {recorded!r}, which is neither an embedded model, a hub id nor a "
        "path that exists here: pass the model explicitly (--model / model=)"
    )
