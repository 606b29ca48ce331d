"""Strength sweep: for a grid of strengths, how often the output is on target by an honest judge, and how fluent it
stays.

For each strength s the prompts are generated with `edit(feature, s)`, then
- on-target (with a `judge`): the judge's verdict on the generated text — a classifier that is not the steered
  feature: a user-given classifier, a `qscope.evaluation.judges` judge trained on labelled text, or the concept's
  seed classifier on an unsteered re-encode of the output with the steered feature removed from its signature
  (`SignatureJudge`). Without a judge, on-target falls back to the steered feature's own activation in the
  re-encoded output (`feature_rate`), which the steering itself raises: circular, and reported as such;
- feature_rate (always): the generated text, re-encoded with the SAE, activates the steered feature at some token
  at >= `threshold` x the feature's scale (its typical max activation);
- fluency: perplexity of the generated tokens given the prompt under the *unsteered* model, and the
  distinct-word ratio (degenerate repetition scores low; a judged output below 0.4 never counts as on target).
The judge's rate at strength 0 is reported as `judge_floor`: on neutral prompts, where it should be near 0.
The best trade-off maximizes the on-target rate among strengths whose mean perplexity is within the bound
(`max_perplexity`, default `ppl_factor` x the unsteered perplexity; strength 0 is always measured as the baseline);
ties go to the smaller strength. Its row is marked `best`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from qscope.errors import InputError
from qscope.operators.filter import MIN_DISTINCT_WORD_RATIO, distinct_word_ratio
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

    judge: str = "feature activation (circular)"
    """What decided on-target: the judge's name, or the steered feature's own activation when none was given."""

    judge_floor: float | None = None
    """The judge's on-target rate on the unsteered outputs (strength 0). On neutral prompts it should be near 0: a
    high floor means the judge's negatives do not look like this model's answers (a judge trained on AG News sports
    vs other news called the model's plain chat "sports"), and its rates at other strengths say little."""

    ROW_KEYS = (
        "strength",
        "on_target_rate",
        "feature_rate",
        "mean_max_activation",
        "perplexity",
        "distinct_word_ratio",
        "mean_new_tokens",
        "n_prompts",
        "within_bound",
        "best",
    )

    def to_polars(self):
        import polars as pl

        return pl.DataFrame(self.rows)

    def to_dict(self) -> dict:
        return {
            "feature": self.feature,
            "layer": self.layer,
            "op": self.op,
            "best_strength": self.best_strength,
            "judge": self.judge,
            "judge_floor": self.judge_floor,
            "perplexity_bound": self.perplexity_bound,
            "rows": self.rows,
            "samples": {str(k): v for k, v in self.samples.items()},
        }


@torch.no_grad()
def continuation_perplexity(lm, prompt_ids: Sequence[Sequence[int]], gen_ids: Sequence[Sequence[int]]) -> list[float]:
    """exp(mean NLL) of each continuation given its prompt, under `lm` with no hooks (nan if empty)."""
    out = []
    for p, g in zip(prompt_ids, gen_ids):
        if not g:
            out.append(float("nan"))
            continue
        ids = torch.tensor([list(p) + list(g)], device=lm.device)
        logits = lm.model(input_ids=ids, use_cache=False).logits[0, len(p) - 1 : -1].float()
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(list(g), device=lm.device))
        out.append(math.exp(float(nll)))
    return out


def strength_sweep(
    engine,
    prompts: Sequence[str] | str,
    feature: int,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    *,
    layer: int | None = None,
    op: str = "activate",
    positions: str = "all",
    max_new_tokens: int = 32,
    threshold: float = 0.1,
    max_perplexity: float | None = None,
    ppl_factor: float = 2.0,
    lm=None,
    chat: bool = True,
    keep_samples: int = 2,
    judge=None,
    temperature: float = 0.0,
    seed: int = 0,
) -> SweepResult:
    """Run the sweep on `engine` (any `GenerationEngine`). `lm`: the HF LanguageModel used to re-encode outputs and
    score perplexity (default: the engine's own `lm`, else loaded).

    judge: decides on-target — an object with `proba(texts)` (and optionally `threshold`, default 0.5, and
    `name`), e.g. a `qscope.evaluation.judges` judge, or a plain callable texts -> scores / bools. A judge that
    has `exclude_features` (SignatureJudge) is told the steered feature, so it cannot read the steering back."""
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

    verdict, judge_name = _judge_fn(judge, feature)
    rows, samples = [], {}
    for s in grid:
        iv = None if s == 0 and op == "activate" else resolved.with_strength(s)
        results = engine.generate(
            prompts, intervention=iv, max_new_tokens=max_new_tokens, chat=chat, temperature=temperature, seed=seed
        )
        maxes = []
        texts = [r.text for r in results]
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        acts = [0.0] * len(texts)
        if nonempty:
            docs = extractor.extract([texts[i] for i in nonempty])[layer]
            for i, doc in zip(nonempty, docs):
                acts[i] = max(
                    (
                        float(v[ids == feature].max())
                        for ids, v in zip(doc.token_indices, doc.token_values)
                        if (ids == feature).any()
                    ),
                    default=0.0,
                )
        maxes = acts
        ppl = continuation_perplexity(lm, [r.prompt_token_ids for r in results], [r.token_ids for r in results])
        finite = [p for p in ppl if math.isfinite(p)]
        feature_rate = sum(a >= threshold * scale and a > 0 for a in maxes) / len(maxes)
        # a judge's verdict counts only on fluent text: repetition ("trading stocks trading stocks ...") has low
        # perplexity and can carry the concept's words, and a sample like that is of no use
        fluent = [distinct_word_ratio(t) >= MIN_DISTINCT_WORD_RATIO for t in texts]
        rows.append(
            {
                "strength": s,
                "on_target_rate": feature_rate
                if verdict is None
                else float(sum(bool(v) and f for v, f in zip(verdict(texts), fluent)) / len(texts)),
                "feature_rate": feature_rate,
                "mean_max_activation": sum(maxes) / len(maxes),
                "perplexity": sum(finite) / len(finite) if finite else float("nan"),
                "distinct_word_ratio": sum(distinct_word_ratio(t) for t in texts) / len(texts),
                "mean_new_tokens": sum(len(r.token_ids) for r in results) / len(results),
                "n_prompts": len(results),
            }
        )
        samples[s] = texts[:keep_samples]
    baseline = rows[0]["perplexity"]
    bound = float(max_perplexity) if max_perplexity is not None else ppl_factor * baseline
    best = None
    for row in rows:
        row["within_bound"] = bool(math.isfinite(row["perplexity"]) and row["perplexity"] <= bound)
        if row["within_bound"] and (best is None or row["on_target_rate"] > best["on_target_rate"]):
            best = row
    for row in rows:
        row["best"] = row is best
    result = SweepResult(rows, best["strength"] if best else None, bound, feature, layer, op, samples, judge_name)
    if verdict is not None:
        result.judge_floor = rows[0]["on_target_rate"]
    return result


def _judge_fn(judge, feature: int):
    """(texts -> bool array, name) for a judge object or callable; (None, circular label) without one."""
    import numpy as np

    if judge is None:
        return None, "feature activation (circular)"
    if hasattr(judge, "exclude_features"):
        judge.exclude_features = sorted(set(judge.exclude_features) | {int(feature)})
    threshold = float(getattr(judge, "threshold", 0.5))
    score = judge.proba if hasattr(judge, "proba") else judge
    name = getattr(judge, "name", None) or getattr(judge, "__name__", None) or type(judge).__name__

    def verdict(texts):
        out = np.asarray(score(list(texts)))
        if out.dtype == bool:
            return out
        return out.astype(float) >= threshold

    return verdict, str(name)
