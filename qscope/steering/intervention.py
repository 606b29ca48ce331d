"""`Intervention`: which SAE features to activate, suppress or clamp, where, and how strongly.

Strength unit (what makes strengths transfer between features): **1.0 = the feature's typical maximum
activation** ("scale", see `qscope.steering.calibration`), taken from the SAE's feature statistics when they
exist. Per operation:

- `activate(f, s)`: add `s * scale_f * W_dec[f]` to the residual stream, i.e. the contribution the feature makes
  when it fires at s times its typical max. (Equivalently `s * scale_f * |W_dec[f]|` along the unit direction.)
- `suppress(f, s)`: scale the feature's own activation by `(1 - s)` in SAE space: s = 1 removes it, 0 is a no-op,
  s > 1 pushes the stream past zero (anti-steering). Unitless, so it transfers between features as is.
- `clamp(f, v)`: set the feature's activation to `v * scale_f` (v >= 0) at every steered position.

Suppress and clamp are *reconstruction-error preserving*: `x' = x + (f'(x) - f(x)) * W_dec[f]`, so whatever the SAE
fails to reconstruct (its error term) stays in the stream untouched.

Positions (per edit), with P = prompt length in tokens and position 0 never touched:
- `"all"`: every position >= 1.
- `"prompt"`: 1 <= p < P (the prompt tokens).
- `"generated"`: p >= P - 1, i.e. every position whose output predicts a generated token (the last prompt token and
  each generated token fed back in), so the first generated token is steered too.
Position 0 is the attention sink: its residual norm is ~100x the others (SmolLM2 layer 15: 22735 vs ~170) and
feature reading drops it; adding a steering vector there changes nothing useful and perturbs every later position
through attention, so it is left alone.

An intervention is plain data: JSON/YAML round-trips (`to_dict` / `from_dict` / `to_json` / `to_yaml`), so a
pipeline row can carry one. `validate(saes)` checks it against the loaded SAEs (layer -> SAE) and raises a
`qscope.steering.errors` subclass of `QscopeError` on bad input, before any generation.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from qscope.steering.errors import (
    InterventionError,
    InvalidStrengthError,
    MissingSAEError,
    SAEMismatchError,
    UnknownFeatureError,
)

Op = Literal["activate", "suppress", "clamp"]
Positions = Literal["all", "prompt", "generated"]
OPS: tuple[str, ...] = ("activate", "suppress", "clamp")
POSITIONS: tuple[str, ...] = ("all", "prompt", "generated")
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FeatureEdit:
    """One operation on one SAE feature at one layer."""

    op: str
    """"activate", "suppress" or "clamp"."""
    feature: int
    """Latent index in the SAE of `layer`."""
    strength: float
    """activate: multiples of the feature's scale; suppress: fraction removed; clamp: target in units of scale."""
    layer: int | None = None
    """Hook layer (residual stream after block `layer`); None = the only SAE the engine has."""
    positions: str = "all"
    """"all", "prompt" or "generated" (see module docstring)."""
    sae_id: str | None = None
    """The SAE the feature id refers to; checked against the loaded SAE when set."""
    scale: float | None = None
    """Explicit typical-max activation for this feature (overrides feature statistics)."""

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Intervention:
    """A set of feature edits applied together. Immutable; the builder methods return a new intervention."""

    edits: tuple[FeatureEdit, ...] = ()

    # --- building -------------------------------------------------------------------------------------
    def _with(
        self,
        op: str,
        feature: int,
        strength: float,
        *,
        layer: int | None = None,
        positions: str = "all",
        sae=None,
        scale: float | None = None,
    ) -> Intervention:
        # The three builders share these keywords (where and how the edit applies); they are
        # spelled once here so activate/suppress/clamp cannot drift apart.
        sae_id = sae if isinstance(sae, str) or sae is None else sae.sae_id
        if layer is None and sae is not None and not isinstance(sae, str):
            layer = sae.cfg.hook_layer
        edit = FeatureEdit(op, feature, strength, layer, positions, sae_id, scale)
        return Intervention(self.edits + (edit,))

    def activate(self, feature: int, strength: float = 1.0, **where) -> Intervention:
        """Add `strength` × the feature's scale along its decoder direction.

        `where` takes layer=, positions= ("all", "prompt", "generated"), sae= (an SAE or its id, which
        also sets the layer) and scale= (explicit typical-max activation), as in `FeatureEdit`."""
        return self._with("activate", feature, strength, **where)

    def suppress(self, feature: int, strength: float = 1.0, **where) -> Intervention:
        """Remove `strength` (a fraction, 1.0 = all) of the feature's activation; `where` as in `activate`."""
        return self._with("suppress", feature, strength, **where)

    def clamp(self, feature: int, value: float, **where) -> Intervention:
        """Hold the feature at `value` × its scale; `where` as in `activate`."""
        return self._with("clamp", feature, value, **where)

    def __add__(self, other: Intervention) -> Intervention:
        if not isinstance(other, Intervention):
            return NotImplemented
        return Intervention(self.edits + other.edits)

    def with_strength(self, strength: float) -> Intervention:
        """Same edits with every strength replaced (used by the strength sweep)."""
        return Intervention(tuple(dataclasses.replace(e, strength=strength) for e in self.edits))

    def __len__(self) -> int:
        return len(self.edits)

    @property
    def layers(self) -> list[int]:
        return sorted({e.layer for e in self.edits if e.layer is not None})

    # --- serialization ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": FORMAT_VERSION, "edits": [e.to_dict() for e in self.edits]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Intervention:
        if isinstance(data, Mapping):
            version = data.get("version", FORMAT_VERSION)
            if version != FORMAT_VERSION:
                raise InterventionError(f"intervention format version {version} not supported (expected 1)")
            items = data.get("edits")
            if items is None:
                raise InterventionError("intervention dict has no 'edits' list")
        else:
            items = data
        fields = {f.name for f in dataclasses.fields(FeatureEdit)}
        edits = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InterventionError(f"edit #{i} is {type(item).__name__}, expected a mapping")
            unknown = set(item) - fields
            if unknown:
                raise InterventionError(f"edit #{i}: unknown keys {sorted(unknown)} (allowed: {sorted(fields)})")
            missing = {"op", "feature", "strength"} - set(item)
            if missing:
                raise InterventionError(f"edit #{i}: missing keys {sorted(missing)}")
            edits.append(FeatureEdit(**item))
        return cls(tuple(edits))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Intervention:
        return cls._parse(text, json.loads, json.JSONDecodeError, "JSON")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Intervention:
        import yaml

        return cls._parse(text, yaml.safe_load, yaml.YAMLError, "YAML")

    @classmethod
    def _parse(cls, text: str, load, syntax_error: type[Exception], fmt: str) -> Intervention:
        try:
            data = load(text)
        except syntax_error as exc:
            raise InterventionError(f"intervention is not valid {fmt}: {exc}") from exc
        return cls.from_dict(data)

    # --- validation --------------------------------------------------------------------------------------
    def validate(self, saes: Mapping[int, Any]) -> Intervention:
        """Check every edit against the loaded SAEs (layer -> SAE); return a copy with layers and sae ids filled."""
        if not saes:
            raise MissingSAEError("no SAE loaded: steering needs at least one SAE (pass saes={layer: sae})")
        resolved = []
        for i, e in enumerate(self.edits):
            where = f"edit #{i} ({e.op} feature {e.feature})"
            if e.op not in OPS:
                raise InterventionError(f"{where}: unknown op {e.op!r}; choose one of {OPS}")
            if e.positions not in POSITIONS:
                raise InterventionError(f"{where}: unknown positions {e.positions!r}; choose one of {POSITIONS}")
            _check_number(e.strength, f"{where}: strength")
            if e.op == "clamp" and e.strength < 0:
                raise InvalidStrengthError(
                    f"{where}: clamp value {e.strength} < 0 (SAE activations are >= 0; "
                    "use suppress with strength > 1 to push a feature negative)"
                )
            if e.scale is not None:
                _check_number(e.scale, f"{where}: scale")
                if e.scale <= 0:
                    raise InvalidStrengthError(f"{where}: scale must be > 0, got {e.scale}")
            layer = e.layer
            if layer is None:
                if len(saes) != 1:
                    raise MissingSAEError(
                        f"{where}: no layer given and several SAEs loaded (layers {sorted(saes)}); pass layer="
                    )
                layer = next(iter(saes))
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise MissingSAEError(f"{where}: layer must be an int, got {layer!r}")
            if layer not in saes:
                raise MissingSAEError(
                    f"{where}: no SAE loaded for layer {layer} (SAEs loaded for layers {sorted(saes)})"
                )
            sae = saes[layer]
            if e.sae_id is not None and e.sae_id != sae.sae_id:
                raise SAEMismatchError(
                    f"{where}: built for SAE {e.sae_id!r} but layer {layer} has SAE "
                    f"{sae.sae_id!r}; feature ids do not transfer between SAEs"
                )
            if isinstance(e.feature, bool) or not isinstance(e.feature, int):
                raise UnknownFeatureError(f"{where}: feature id must be an int, got {e.feature!r}")
            if not 0 <= e.feature < sae.d_sae:
                raise UnknownFeatureError(f"{where}: SAE {sae.sae_id!r} has features 0..{sae.d_sae - 1}")
            resolved.append(dataclasses.replace(e, layer=layer, sae_id=sae.sae_id))
        return Intervention(tuple(resolved))


def _check_number(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStrengthError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidStrengthError(f"{what} must be finite, got {value}")


def activate(feature: int, strength: float = 1.0, **kw) -> Intervention:
    """`Intervention().activate(...)`: add the feature's decoder direction (see module docstring for units)."""
    return Intervention().activate(feature, strength, **kw)


def suppress(feature: int, strength: float = 1.0, **kw) -> Intervention:
    """`Intervention().suppress(...)`: remove a fraction `strength` of the feature's activation."""
    return Intervention().suppress(feature, strength, **kw)


def clamp(feature: int, value: float, **kw) -> Intervention:
    """`Intervention().clamp(...)`: hold the feature's activation at `value` x its typical max."""
    return Intervention().clamp(feature, value, **kw)
