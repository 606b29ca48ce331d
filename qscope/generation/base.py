"""The interface every generation engine implements, and the parts they share.

Shared on purpose, so the engines agree token for token: prompts are rendered (chat template) and tokenized
*here*, once, and both engines receive the same token ids; stop tokens are the same set; interventions are
validated and calibrated here into one `SteeringPlan` that both engines turn into the same tensors.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from qscope.errors import InputError
from qscope.steering.calibration import StrengthCalibration
from qscope.steering.compiled import SteeringPlan, compile_plan
from qscope.steering.intervention import Intervention


@dataclass
class GenerationResult:
    """One completion. `token_ids` are the generated ids (stop token excluded); `text` their decoding."""

    prompt: str
    text: str
    token_ids: list[int]
    finish_reason: str = "length"  # "stop" (a stop token was produced) or "length" (max_new_tokens reached)
    prompt_token_ids: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": self.finish_reason,
        }


class Sampling(NamedTuple):
    """How every prompt of one `generate` call is decoded (checked by `generate`, the same for both engines)."""

    max_new_tokens: int
    temperature: float
    """0: greedy."""
    seed: int
    """The base seed of seeded sampling (unused when greedy)."""
    ignore_eos: bool = False
    """Always generate max_new_tokens."""


class GenerationEngine(abc.ABC):
    """Generate from prompts, optionally steered by an `Intervention`.

    Subclasses set `self.tokenizer`, `self.saes` ({layer: SAE}) and `self.calibrations` and implement `_generate`.
    """

    name: str = "base"
    tokenizer = None
    saes: dict[int, object]
    calibrations: dict[int, StrengthCalibration]

    # --- public -----------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str] | str,
        intervention: Intervention | None | Sequence[Intervention | None] = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        chat: bool = True,
        ignore_eos: bool = False,
    ) -> list[GenerationResult]:
        """Greedy when temperature == 0; seeded sampling otherwise (reproducible per engine, not across engines).

        intervention: one for every prompt (or None), or a list with one per prompt (None = unsteered). The vLLM
        engine runs a mixed list in one continuous batch; the HF engine runs one batch per distinct intervention.
        ignore_eos: always generate max_new_tokens (benchmarks: equal work in every run)."""
        prompts = self._check_prompts(prompts)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if not isinstance(temperature, (int, float)) or not 0 <= temperature < float("inf"):
            raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}")
        plans = self.plans(intervention, len(prompts))  # all validated before any generation
        token_prompts = [self.encode_prompt(p, chat) for p in prompts]
        sampling = Sampling(max_new_tokens, float(temperature), int(seed), bool(ignore_eos))
        outputs = self._generate(token_prompts, plans, sampling)
        results = []
        for prompt, ids_in, ids_out in zip(prompts, token_prompts, outputs):
            ids_out, finish = self._strip_stop(list(ids_out), max_new_tokens, ignore_eos)
            text = self.tokenizer.decode(ids_out, skip_special_tokens=True)
            results.append(GenerationResult(prompt, text, ids_out, finish, list(ids_in)))
        return results

    def plans(self, intervention, n: int) -> list[SteeringPlan | None]:
        """One plan per prompt from a single intervention or a per-prompt list (identical ones compiled once)."""
        if intervention is None or isinstance(intervention, Intervention):
            return [self.plan(intervention)] * n
        if isinstance(intervention, (str, bytes, Mapping)) or not isinstance(intervention, Sequence):
            raise InputError(
                f"intervention must be an Intervention, None, or a list of them (one per prompt), "
                f"got {type(intervention).__name__}"
            )
        if len(intervention) != n:
            raise InputError(f"got {len(intervention)} interventions for {n} prompts (one per prompt, None = none)")
        compiled: dict[Intervention | None, SteeringPlan | None] = {}
        for iv in intervention:
            if iv not in compiled:
                compiled[iv] = self.plan(iv)
        return [compiled[iv] for iv in intervention]

    def plan(self, intervention: Intervention | None) -> SteeringPlan | None:
        """Validate + calibrate an intervention into the plain per-layer plan both engines execute."""
        if intervention is None or len(intervention) == 0:
            return None
        if not isinstance(intervention, Intervention):
            raise InputError(f"intervention must be an Intervention, got {type(intervention).__name__}")
        resolved = intervention.validate(self.saes)
        return compile_plan(resolved, self.calibrations)

    def close(self) -> None:  # noqa: B027 - a default that does nothing: an engine holding no process needs none
        """Release the model (and, for vLLM, the engine process)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- shared prompt handling ------------------------------------------------------------------------
    @property
    def stop_token_ids(self) -> list[int]:
        return self._stop_ids

    def _init_tokenizer(self, tokenizer, generation_config=None, prepend_bos: bool = False) -> None:
        self.tokenizer = tokenizer
        self.prepend_bos = prepend_bos
        stop = set()
        if tokenizer.eos_token_id is not None:
            stop.add(int(tokenizer.eos_token_id))
        eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
        if eos is not None:
            stop.update(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        self._stop_ids = sorted(stop)

    def encode_prompt(self, prompt: str, chat: bool = True) -> list[int]:
        """Prompt -> token ids. chat=True uses the tokenizer's chat template (user turn + generation prompt) when
        it has one; raw prompts get the BOS token the model expects (feature reading does the same).

        The prompt is text, never markup: special-token strings in it (`<|im_start|>`, `<|endoftext|>`) are
        spelled out with ordinary tokens, so a seed cannot open a chat turn or end the text
        (`qscope.models.text_tokens`)."""
        from qscope.models.text_tokens import chat_prompt_ids, text_token_ids

        tok = self.tokenizer
        if chat and getattr(tok, "chat_template", None):
            return chat_prompt_ids(tok, prompt)
        ids = text_token_ids(tok, [prompt], add_special_tokens=True)[0]
        if self.prepend_bos and tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
            ids = [tok.bos_token_id] + ids
        return ids

    def _strip_stop(self, ids: list[int], max_new_tokens: int, ignore_eos: bool = False) -> tuple[list[int], str]:
        ids = ids[:max_new_tokens]
        stop = set() if ignore_eos else set(self._stop_ids)
        for i, t in enumerate(ids):
            if t in stop:
                return ids[:i], "stop"
        return ids, "length"

    @staticmethod
    def _check_prompts(prompts) -> list[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise InputError("no prompts given")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise InputError(f"prompt #{i} is empty or not a string")
        return prompts

    @staticmethod
    def _check_saes(saes: Mapping[int, object] | None, d_model: int, n_layers: int) -> dict[int, object]:
        from qscope.errors import ShapeMismatchError

        out = {}
        for layer, sae in (saes or {}).items():
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
                raise InputError(f"SAE layer {layer!r} out of range: the model has layers 0..{n_layers - 1}")
            if sae.d_in != d_model:
                raise ShapeMismatchError(
                    f"SAE {sae.sae_id} has d_in={sae.d_in} but the model's hidden size is {d_model}"
                )
            out[layer] = sae.eval()
        return out

    # --- engine-specific --------------------------------------------------------------------------------
    @abc.abstractmethod
    def _generate(
        self, prompts: list[list[int]], plans: list[SteeringPlan | None], sampling: Sampling
    ) -> list[list[int]]:
        """Token-id prompts + one plan per prompt -> generated token ids per prompt (may include stop tokens /
        trailing padding)."""
