"""Strength calibration: the activation that strength 1.0 stands for, per feature ("scale").

Scale of feature f = its *typical maximum activation* (in SAE units), taken in this order:

1. an explicit `scale` on the edit (or `explicit={feature: scale}` here);
2. the SAE's feature statistics (`qscope.evaluation.load_feature_stats`, saved next to the SAE as
   feature_stats.safetensors), when they exist and were computed for this SAE id: `FeatureStats.strength_unit`,
   the 0.99 quantile of the feature's non-zero activations on the reference corpus;
3. fallback, with a warning: measured on the built-in `CALIBRATION_TEXTS` with the engine's model — the feature's
   max activation over those texts (position 0 and special tokens excluded); a feature that never fires there gets
   the median max activation of the features that did. This is a rough unit: compute feature statistics for
   strengths that transfer between features.

Both engines share one calibration, so HF and vLLM steer with bit-identical vectors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)

CALIBRATION_TEXTS: tuple[str, ...] = (
    "The cat sat on the warm windowsill and watched the birds in the garden.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "The stock market fell sharply on Monday after the central bank raised interest rates.",
    "Preheat the oven to 180 degrees, then mix the flour, sugar and eggs in a large bowl.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong took the first steps.",
    "I'm so happy you came to my birthday party, thank you for the lovely gift!",
    "The patient was diagnosed with pneumonia and treated with antibiotics for ten days.",
    "Quantum entanglement links the states of two particles regardless of the distance between them.",
    "Ham radio operators use Morse code and voice to talk across continents on shortwave bands.",
    "The court ruled that the contract was void because one party had been misled.",
    "Our football team won the championship after a dramatic penalty shootout.",
    "SELECT name, age FROM users WHERE age > 30 ORDER BY name;",
    "The mountain trail was steep and rocky, but the view from the summit was breathtaking.",
    "Please reset your password by clicking the link in the email we sent you.",
    "Le chat noir dort sur le canapé pendant que la pluie tombe dehors.",
    "The violinist played a haunting melody that filled the concert hall with sorrow.",
    "Electric vehicles need batteries with high energy density and fast charging.",
    "He was furious when he discovered that someone had scratched his new car.",
    "Children learn to read by connecting letters with the sounds they make.",
    "The recipe calls for two cups of rice, one onion, and a pinch of saffron.",
    "Volcanoes form where tectonic plates diverge or where one plate slides beneath another.",
    "Dear hiring manager, I am writing to apply for the position of software engineer.",
    "The spaceship drifted silently past Jupiter's moons toward the edge of the solar system.",
)

StatsLoader = Callable[[Any], Mapping[int, float] | None]


class StrengthCalibration:
    """Per-feature scales for one SAE (the activation that strength 1.0 means)."""

    def __init__(
        self,
        sae,
        lm=None,
        explicit: Mapping[int, float] | None = None,
        layer: int | None = None,
        texts: tuple[str, ...] = CALIBRATION_TEXTS,
        stats=None,
        measure: Callable[[tuple[str, ...]], torch.Tensor] | None = None,
    ):
        """stats: a `FeatureStats`, a {feature: scale} mapping, or where to load them from (an SAE directory /
        shipped id / feature_stats file). Default: looked up by the SAE's id.
        measure: the fallback without an `lm`: texts -> per-feature max activation [d_sae] (the vLLM engine
        measures inside its own model, so a vLLM actor needs no HF copy of the model)."""
        self.sae = sae
        self.lm = lm
        self.measure = measure
        self.layer = sae.cfg.hook_layer if layer is None else layer
        self.explicit = {int(k): float(v) for k, v in (explicit or {}).items()}
        self.texts = texts
        self._stats = _load_stats(sae) if stats is None else _stats_from(stats, sae)
        self._measured: torch.Tensor | None = None
        self.source = "feature_stats" if self._stats else "measured"

    def scale(self, feature: int) -> float:
        if feature in self.explicit:
            return self.explicit[feature]
        if self._stats and feature in self._stats and _positive(self._stats[feature]):
            return float(self._stats[feature])
        return float(self._measured_scales()[feature])

    # --- fallback ---------------------------------------------------------------------------------------
    def _measured_scales(self) -> torch.Tensor:
        if self._measured is None:
            if self.lm is None and self.measure is not None:
                log.warning(
                    "no feature statistics for SAE %s: strength 1.0 = the feature's max activation over %d "
                    "built-in texts, measured by the engine (rough; compute feature statistics for "
                    "calibrated strengths)",
                    self.sae.sae_id,
                    len(self.texts),
                )
                self._measured = fill_unfired(self.measure(self.texts))
                return self._measured
            if self.lm is None:
                from qscope.steering.errors import InterventionError

                raise InterventionError(
                    f"no feature statistics for SAE {self.sae.sae_id!r} and no model to measure typical "
                    "activations with: pass an explicit scale= on the edit, or compute feature statistics"
                )
            log.warning(
                "no feature statistics for SAE %s: strength 1.0 = the feature's max activation over %d built-in "
                "texts (rough; compute feature statistics for calibrated strengths)",
                self.sae.sae_id,
                len(self.texts),
            )
            lm = self.lm.get() if not hasattr(self.lm, "residuals") and hasattr(self.lm, "get") else self.lm
            self._measured = measure_typical_max(lm, self.sae, self.layer, self.texts)
        return self._measured


@torch.no_grad()
def measure_typical_max(lm, sae, layer: int, texts) -> torch.Tensor:
    """Per-feature max activation over `texts` [d_sae]; never-firing features get the median of the others."""
    res = lm.residuals(list(texts), [layer])
    mask = res.attention_mask.bool().clone()
    mask[:, 0] = False  # attention sink
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)), device=res.input_ids.device)
    mask &= ~torch.isin(res.input_ids, special)
    x = res.hidden[layer][mask]
    dense = sae.encode_dense(x.to(sae.W_enc.dtype))
    return fill_unfired(dense.max(dim=0).values)


def fill_unfired(best: torch.Tensor) -> torch.Tensor:
    """Per-feature max activations [d_sae] -> scales: features that never fired get the median of the others."""
    best = best.float().cpu()
    fired = best > 0
    fill = float(best[fired].median()) if fired.any() else 1.0
    return torch.where(fired, best, torch.full_like(best, fill))


def _positive(v) -> bool:
    try:
        return math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        return False


def _load_stats(sae) -> dict[int, float] | None:
    """Typical max activation per feature from the SAE's saved feature statistics, if any (None otherwise)."""
    try:
        from qscope.evaluation import load_feature_stats  # written by the evaluation package
    except ImportError:
        return None
    for spec in _stats_specs(sae):
        try:
            stats = load_feature_stats(spec)
        except Exception:  # noqa: BLE001 - missing stats are normal; fall back
            continue
        recorded = (getattr(stats, "metadata", None) or {}).get("sae")
        if recorded is not None and recorded != sae.sae_id:
            log.warning("feature statistics found for %r belong to SAE %r, not %r: ignored", spec, recorded, sae.sae_id)
            continue
        scales = _typical_max_from(stats)
        if scales:
            return scales
    return None


def _stats_from(stats, sae) -> dict[int, float] | None:
    if isinstance(stats, Mapping) and all(isinstance(k, int) for k in stats):
        return {int(k): float(v) for k, v in stats.items()}
    if isinstance(stats, (str, bytes)) or hasattr(stats, "__fspath__"):
        from qscope.evaluation import load_feature_stats

        stats = load_feature_stats(stats)
    recorded = (getattr(stats, "metadata", None) or {}).get("sae")
    if recorded is not None and recorded != sae.sae_id:
        from qscope.steering.errors import SAEMismatchError

        raise SAEMismatchError(f"feature statistics were computed for SAE {recorded!r}, not {sae.sae_id!r}")
    return _typical_max_from(stats)


def _stats_specs(sae) -> list:
    specs = []
    source = sae.cfg.metadata.get("source_dir") if isinstance(sae.cfg.metadata, dict) else None
    if source:
        specs.append(source)
    specs.append(sae.sae_id)
    if "/" in sae.sae_id:
        specs.append(sae.sae_id.rsplit("/", 1)[-1])
    return specs


_TYPICAL_MAX_KEYS = (
    "strength_unit",
    "typical_max",
    "max_activation_p50",
    "top_activation_median",
    "max_act_median",
    "activation_p99",
    "p99",
    "max_activation",
    "max_act",
    "max",
)


def _typical_max_from(stats) -> dict[int, float] | None:
    """Accept a mapping / dataclass / polars frame of per-feature stats; pick the typical-max column."""
    import numpy as np

    for key in _TYPICAL_MAX_KEYS:
        values = None
        if hasattr(stats, key):
            values = getattr(stats, key)
        elif isinstance(stats, Mapping) and key in stats:
            values = stats[key]
        elif hasattr(stats, "columns") and key in stats.columns:
            values = stats[key]
        if values is None or callable(values):
            continue
        arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values, dtype=np.float64).ravel()
        return {i: float(v) for i, v in enumerate(arr) if math.isfinite(v) and v > 0}
    return None
