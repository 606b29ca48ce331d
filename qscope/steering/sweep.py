"""Strength sweep: for a grid of strengths, how often the output carries the target feature and how fluent it stays.

For each strength s the prompts are generated with `edit(feature, s)`, then
- on-target: the generated text (alone, re-encoded with the SAE by `FeatureExtractor`) activates the target
  feature at some token at >= `threshold` x the feature's scale (its typical max activation);
- fluency: perplexity of the generated tokens given the prompt under the *unsteered* model.
The best strength maximizes the on-target rate among strengths whose mean perplexity is within the bound
(`max_perplexity`, default `ppl_factor` x the unsteered perplexity; strength 0 is always measured as the baseline);
ties go to the smaller strength.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from qscope.errors import InputError
from qscope.steering.intervention import Intervention

DEFAULT_STRENGTHS: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclasses.dataclass
class SweepResult:
    """`rows`: one dict per strength (see `ROW_KEYS`); `best_strength`: None if no strength met the bound."""

    rows: list[dict]
    best_strength: float | None
    perplexity_bound: float
    feature: int
    layer: int
    op: str
    samples: dict[float, list[str]] = dataclasses.field(default_factory=dict)

    ROW_KEYS = ("strength", "on_target_rate", "mean_max_activation", "perplexity", "mean_new_tokens",
                "n_prompts", "within_bound")

    def to_polars(self):
        import polars as pl

        return pl.DataFrame(self.rows)

    def to_dict(self) -> dict:
        return {"feature": self.feature, "layer": self.layer, "op": self.op, "best_strength": self.best_strength,
                "perplexity_bound": self.perplexity_bound, "rows": self.rows,
                "samples": {str(k): v for k, v in self.samples.items()}}


@torch.no_grad()
def continuation_perplexity(lm, prompt_ids: Sequence[Sequence[int]], gen_ids: Sequence[Sequence[int]]) -> list[float]:
    """exp(mean NLL) of each continuation given its prompt, under `lm` with no hooks (nan if empty)."""
    out = []
    for p, g in zip(prompt_ids, gen_ids):
        if not g:
            out.append(float("nan"))
            continue
        ids = torch.tensor([list(p) + list(g)], device=lm.device)
        logits = lm.model(input_ids=ids, use_cache=False).logits[0, len(p) - 1:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(list(g), device=lm.device))
        out.append(math.exp(float(nll)))
    return out


def strength_sweep(engine, prompts: Sequence[str] | str, feature: int, strengths: Sequence[float] = DEFAULT_STRENGTHS,
                   *, layer: int | None = None, op: str = "activate", positions: str = "all",
                   max_new_tokens: int = 32, threshold: float = 0.1, max_perplexity: float | None = None,
                   ppl_factor: float = 2.0, lm=None, chat: bool = True, keep_samples: int = 2) -> SweepResult:
    """Run the sweep on `engine` (any `GenerationEngine`). `lm`: the HF LanguageModel used to re-encode outputs and
    score perplexity (default: the engine's own `lm`, else loaded)."""
    from qscope.features import FeatureExtractor

    if op not in ("activate", "clamp"):
        raise InputError(f"sweep op must be 'activate' or 'clamp', got {op!r}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    grid = sorted({float(s) for s in strengths} | {0.0})
    base = getattr(Intervention(), op)(feature, 1.0, layer=layer, positions=positions)
    resolved = base.validate(engine.saes)  # bad feature / layer / SAE: fail before generating anything
    edit = resolved.edits[0]
    layer = edit.layer
    for s in grid:
        resolved.with_strength(s).validate(engine.saes)
    scale = edit.scale if edit.scale is not None else engine.calibrations[layer].scale(feature)
    lm = lm or getattr(engine, "lm", None)
    if lm is None:
        from qscope.models import LanguageModel

        lm = LanguageModel.load(getattr(engine, "model_name", None))
    extractor = FeatureExtractor(lm, {layer: engine.saes[layer]})

    rows, samples = [], {}
    for s in grid:
        iv = None if s == 0 and op == "activate" else resolved.with_strength(s)
        results = engine.generate(prompts, intervention=iv, max_new_tokens=max_new_tokens, chat=chat)
        maxes = []
        texts = [r.text for r in results]
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        acts = [0.0] * len(texts)
        if nonempty:
            docs = extractor.extract([texts[i] for i in nonempty])[layer]
            for i, doc in zip(nonempty, docs):
                acts[i] = max((float(v[ids == feature].max()) for ids, v in zip(doc.token_indices, doc.token_values)
                               if (ids == feature).any()), default=0.0)
        maxes = acts
        ppl = continuation_perplexity(lm, [r.prompt_token_ids for r in results], [r.token_ids for r in results])
        finite = [p for p in ppl if math.isfinite(p)]
        rows.append({
            "strength": s,
            "on_target_rate": sum(a >= threshold * scale and a > 0 for a in maxes) / len(maxes),
            "mean_max_activation": sum(maxes) / len(maxes),
            "perplexity": sum(finite) / len(finite) if finite else float("nan"),
            "mean_new_tokens": sum(len(r.token_ids) for r in results) / len(results),
            "n_prompts": len(results),
        })
        samples[s] = texts[:keep_samples]
    baseline = rows[0]["perplexity"]
    bound = float(max_perplexity) if max_perplexity is not None else ppl_factor * baseline
    best = None
    for row in rows:
        row["within_bound"] = bool(math.isfinite(row["perplexity"]) and row["perplexity"] <= bound)
        if row["within_bound"] and (best is None or row["on_target_rate"] > best["on_target_rate"]):
            best = row
    return SweepResult(rows, best["strength"] if best else None, bound, feature, layer, op, samples)
