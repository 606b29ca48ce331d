"""Engine settings from config (`synthesis.engine_kwargs`), checked before any model loads.

    kw = resolve_engine_kwargs("vllm", {"tensor_parallel_size": 2, "max_model_len": 4096}, num_gpus=2)
    SteeredGenerate(engine="vllm", engine_kwargs=kw, resources={"num_gpus": 2})

`resolve_engine_kwargs` imports no model and not vLLM (importing it takes seconds, bench/README.md): vLLM setting
names are read from the installed vLLM's `EngineArgs` class by parsing its source (`vllm/engine/arg_utils.py`), so
every setting `vllm.LLM(...)` takes is accepted and a typo is refused with the setting named. Without vLLM installed on
the validating machine only `COMMON_VLLM_SETTINGS` are known; other names pass with a warning (the actor that
loads the engine has vLLM and refuses them there).

Defaults that fit the device (`num_gpus` = GPUs per actor):
- dtype: "bfloat16" on GPU, "float32" on CPU (the HF engine's arithmetic: greedy agreement needs it).
- gpu_memory_utilization (GPU only): vLLM reserves this fraction of the *whole* GPU per engine, so an actor with
  a fraction of a GPU gets 0.9 x that fraction (num_gpus 0.5 -> 0.45: two engines fit on one GPU); a setting
  above the actor's share is refused.
- max_model_len: 2048 (prompts here are a few hundred tokens; a model's own maximum, 32k-128k for Qwen3, makes
  vLLM reserve KV cache for one such sequence, which a shared GPU may not hold).
- tensor_parallel_size x pipeline_parallel_size must equal the actor's whole GPUs; `SteeredGenerate.
  map_batches_kwargs` then gives the actor a placement group with one GPU bundle per engine worker.
Settings qscope owns (model, tokenizer, worker_extension_cls, enforce_eager=False, ...) are refused: see
`OWNED_VLLM_SETTINGS`.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
from pathlib import Path

from qscope.errors import InputError

log = logging.getLogger(__name__)

HF_SETTINGS = {"batch_size": "prompts per padded `generate` batch (positive int)"}
QSCOPE_VLLM_SETTINGS = {"kv_cache_gib": "CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE; default 1)"}
OWNED_VLLM_SETTINGS = {
    "model": "set the model in the stage's model spec",
    "tokenizer": "the tokenizer is the model's own",
    "worker_extension_cls": "qscope's steering extension is always installed",
    "seed": "set the stage's seed",
    "skip_tokenizer_init": "qscope tokenizes prompts itself and needs the tokenizer",
}
COMMON_VLLM_SETTINGS = (
    "dtype",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_chunked_prefill",
    "enable_prefix_caching",
    "quantization",
    "kv_cache_dtype",
    "enforce_eager",
    "block_size",
    "cpu_offload_gb",
    "trust_remote_code",
    "revision",
    "download_dir",
    "load_format",
    "distributed_executor_backend",
    "disable_log_stats",
    "disable_custom_all_reduce",
    "hf_overrides",
    "compilation_config",
    "attention_backend",
    "async_scheduling",
)
"""Known without vLLM installed (a subset of vLLM 0.32's `EngineArgs` fields)."""
DTYPES = ("auto", "float32", "float", "bfloat16", "float16", "half")


@functools.lru_cache(maxsize=1)
def vllm_setting_names() -> frozenset[str] | None:
    """Field names of the installed vLLM's `EngineArgs` (what `vllm.LLM(**kw)` accepts), or None without vLLM."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "engine" / "arg_utils.py"
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "EngineArgs":
            return frozenset(
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            )
    return None


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"engine_kwargs.{name} must be a positive integer, got {value!r}")
    return value


def resolve_engine_kwargs(engine: str, engine_kwargs: dict | None, num_gpus: float) -> dict:
    """Checked engine settings with device-fitting defaults filled in (see module docstring). Idempotent."""
    kw = dict(engine_kwargs or {})
    bad = [k for k in kw if not isinstance(k, str)]
    if bad:
        raise InputError(f"engine_kwargs keys must be strings, got {bad!r}")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
        raise InputError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
    if engine == "hf":
        unknown = sorted(set(kw) - set(HF_SETTINGS))
        if unknown:
            raise InputError(
                f"engine_kwargs.{unknown[0]}: not a setting of the hf engine (it takes "
                f"{sorted(HF_SETTINGS)}; vLLM settings need engine: vllm)"
            )
        if "batch_size" in kw:
            _positive_int("batch_size", kw["batch_size"])
        return kw
    if engine != "vllm":
        from qscope.generation import ENGINES

        raise InputError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    return _resolve_vllm(kw, float(num_gpus))


def _resolve_vllm(kw: dict, num_gpus: float) -> dict:
    for name, why in OWNED_VLLM_SETTINGS.items():
        if name in kw:
            raise InputError(f"engine_kwargs.{name} cannot be set: {why}")
    if kw.get("enforce_eager") is False:
        raise InputError(
            "engine_kwargs.enforce_eager=false: steering hooks do not run inside CUDA graphs / "
            "torch.compile (see docs/steering.md)"
        )
    known = vllm_setting_names()
    for name in kw:
        if name in QSCOPE_VLLM_SETTINGS:
            continue
        if known is not None and name not in known:
            raise InputError(f"engine_kwargs.{name}: not a vLLM engine setting (see vllm.EngineArgs)")
        if known is None and name not in COMMON_VLLM_SETTINGS:
            log.warning("engine_kwargs.%s: vLLM is not installed here, so the setting is not checked", name)
    kw.setdefault("dtype", "bfloat16" if num_gpus > 0 else "float32")
    if kw["dtype"] not in DTYPES:
        raise InputError(f"engine_kwargs.dtype must be one of {DTYPES}, got {kw['dtype']!r}")
    kw["max_model_len"] = _positive_int("max_model_len", kw.get("max_model_len", 2048))
    tp = _positive_int("tensor_parallel_size", kw.get("tensor_parallel_size", 1))
    pp = _positive_int("pipeline_parallel_size", kw.get("pipeline_parallel_size", 1))
    if "kv_cache_gib" in kw:
        _positive_int("kv_cache_gib", kw["kv_cache_gib"])
    if num_gpus == 0:
        if tp * pp > 1:
            raise InputError(
                f"engine_kwargs.tensor_parallel_size x pipeline_parallel_size = {tp * pp} needs "
                "GPUs: give the stage num_gpus (one per engine worker)"
            )
        if "gpu_memory_utilization" in kw:
            raise InputError("engine_kwargs.gpu_memory_utilization is a GPU setting but the stage has num_gpus: 0")
        return kw
    if tp * pp > 1 and num_gpus != tp * pp:
        raise InputError(
            f"engine_kwargs.tensor_parallel_size x pipeline_parallel_size = {tp * pp} but the stage "
            f"asks for num_gpus: {num_gpus:g}; they must be equal (one GPU per engine worker)"
        )
    if num_gpus > 1 and tp * pp == 1:
        raise InputError(
            f"num_gpus: {num_gpus:g} for one vLLM engine without tensor_parallel_size: one engine "
            "uses one GPU unless engine_kwargs.tensor_parallel_size says otherwise"
        )
    share = min(num_gpus, 1.0)
    util = kw.setdefault("gpu_memory_utilization", round(0.9 * share, 4))
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= share:
        raise InputError(
            f"engine_kwargs.gpu_memory_utilization must be in (0, {share:g}] (the stage's share of a "
            f"GPU, num_gpus: {num_gpus:g}), got {util!r}"
        )
    return kw
