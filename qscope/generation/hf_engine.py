"""Hugging Face engine: batched `generate` (left padding) with steering as forward hooks. Default on CPU."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from qscope.generation.base import GenerationEngine, Sampling
from qscope.steering.calibration import StrengthCalibration
from qscope.steering.compiled import SteeringPlan, build_layers
from qscope.steering.hf_hooks import steer_hf

log = logging.getLogger(__name__)


class HFEngine(GenerationEngine):
    """Generation with a `LanguageModel`.

    Greedy output is deterministic; sampling is seeded with `torch.manual_seed(seed)` before each batch (global
    RNG, so the same call gives the same text). `batch_size` prompts are generated together, left-padded:
    padding changes float rounding slightly, so for exact comparisons across batch compositions use batch_size=1.
    """

    name = "hf"

    def __init__(
        self,
        lm=None,
        saes: Mapping[int, object] | None = None,
        model: str | None = None,
        batch_size: int = 16,
        scales: Mapping[int, Mapping[int, float]] | None = None,
        feature_stats: Mapping[int, object] | None = None,
    ):
        from qscope.models import LanguageModel

        self.lm = lm if lm is not None else LanguageModel.load(model)
        self.batch_size = max(1, int(batch_size))
        self.saes = self._check_saes(saes, self.lm.d_model, self.lm.n_layers)
        self.calibrations = {
            layer: StrengthCalibration(
                sae, lm=self.lm, layer=layer, explicit=(scales or {}).get(layer), stats=(feature_stats or {}).get(layer)
            )
            for layer, sae in self.saes.items()
        }
        self._init_tokenizer(
            self.lm.tokenizer, getattr(self.lm.model, "generation_config", None), prepend_bos=self.lm.prepend_bos
        )
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._stop_ids[0]

    @torch.no_grad()
    def _generate(
        self, prompts: list[list[int]], plans: list[SteeringPlan | None], sampling: Sampling
    ) -> list[list[int]]:
        # Hooks steer a whole batch alike, so prompts are grouped by plan (first-seen order) and each group is
        # batched on its own; a single plan for every prompt is one group, batched as before.
        groups: dict[str | None, list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault(plan.key() if plan is not None else None, []).append(i)
        out: list[list[int]] = [[] for _ in prompts]
        for rows in groups.values():
            plan = plans[rows[0]]
            layers = build_layers(plan, self.saes) if plan is not None else {}
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                generated = self._generate_batch(
                    [prompts[i] for i in chunk], layers, sampling._replace(seed=sampling.seed + start)
                )
                for i, ids in zip(chunk, generated):
                    out[i] = ids
        return out

    def _generate_batch(self, batch, layers, sampling: Sampling) -> list[list[int]]:
        from transformers import GenerationConfig

        max_new_tokens, temperature, seed, ignore_eos = sampling
        width = max(len(p) for p in batch)
        device = self.lm.device
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention[i, width - len(ids) :] = 1
        prompt_lens = torch.tensor([len(p) for p in batch])
        left_pad = width - prompt_lens
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_k=None,
            top_p=None,
            pad_token_id=self.pad_id,
            eos_token_id=None if ignore_eos else self._stop_ids,
            min_new_tokens=max_new_tokens if ignore_eos else None,
        )
        if temperature > 0:
            torch.manual_seed(seed)
        with steer_hf(self.lm, layers, prompt_lens, left_pad):
            generated = self.lm.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
            )
        return [row[width:].tolist() for row in generated.cpu()]

    def close(self) -> None:
        pass  # the LanguageModel belongs to the caller (or is freed with the engine)
