"""`resolve_engine_kwargs`: engine settings from config, checked before any model loads, with device defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qscope.errors import InputError
from qscope.generation import resolve_engine_kwargs
from qscope.generation.engine_config import COMMON_VLLM_SETTINGS, vllm_setting_names


def test_cpu_defaults_and_idempotence():
    kw = resolve_engine_kwargs("vllm", {"max_num_seqs": 64}, num_gpus=0)
    assert kw == {"max_num_seqs": 64, "dtype": "float32", "max_model_len": 2048}
    assert resolve_engine_kwargs("vllm", kw, num_gpus=0) == kw


@pytest.mark.parametrize("num_gpus, util", [(1, 0.9), (0.5, 0.45), (0.25, 0.225)])
def test_gpu_defaults_fit_the_actors_share(num_gpus, util):
    kw = resolve_engine_kwargs("vllm", None, num_gpus=num_gpus)
    assert kw["dtype"] == "bfloat16" and kw["gpu_memory_utilization"] == pytest.approx(util)
    assert resolve_engine_kwargs("vllm", kw, num_gpus=num_gpus) == kw


def test_explicit_settings_are_kept():
    kw = resolve_engine_kwargs(
        "vllm",
        {"dtype": "float16", "tensor_parallel_size": 2, "max_model_len": 8192, "gpu_memory_utilization": 0.8},
        num_gpus=2,
    )
    assert kw["dtype"] == "float16" and kw["max_model_len"] == 8192 and kw["gpu_memory_utilization"] == 0.8


@pytest.mark.parametrize(
    "engine, kwargs, num_gpus, named",
    [
        ("vllm", {"tensor_paralel_size": 2}, 1, "tensor_paralel_size"),  # a typo is named
        ("vllm", {"gpu_memory_utilization": 0.8}, 0.5, "gpu_memory_utilization"),  # above the actor's share
        ("vllm", {"gpu_memory_utilization": 0.0}, 1, "gpu_memory_utilization"),
        ("vllm", {"gpu_memory_utilization": 0.5}, 0, "gpu_memory_utilization"),  # a GPU setting on CPU
        ("vllm", {"tensor_parallel_size": 2}, 1, "tensor_parallel_size"),  # TP needs one GPU per rank
        ("vllm", {"tensor_parallel_size": 2}, 0, "tensor_parallel_size"),
        ("vllm", {"tensor_parallel_size": 0}, 0, "tensor_parallel_size"),
        ("vllm", {}, 2, "tensor_parallel_size"),  # two GPUs for one untensor-parallel engine
        ("vllm", {"max_model_len": -1}, 0, "max_model_len"),
        ("vllm", {"dtype": "fp8-ish"}, 0, "dtype"),
        ("vllm", {"model": "other"}, 0, "model"),  # owned by qscope
        ("vllm", {"worker_extension_cls": "x.Y"}, 0, "worker_extension_cls"),
        ("vllm", {"enforce_eager": False}, 0, "enforce_eager"),
        ("vllm", {"kv_cache_gib": 0}, 0, "kv_cache_gib"),
        ("hf", {"tensor_parallel_size": 1}, 0, "tensor_parallel_size"),  # a vLLM setting on the hf engine
        ("hf", {"batch_size": 0}, 0, "batch_size"),
    ],
)
def test_bad_settings_fail_naming_the_setting(engine, kwargs, num_gpus, named):
    with pytest.raises(InputError, match=named):
        resolve_engine_kwargs(engine, kwargs, num_gpus=num_gpus)


def test_unknown_engine():
    with pytest.raises(InputError, match="unknown engine"):
        resolve_engine_kwargs("tgi", {}, num_gpus=0)


def test_names_come_from_the_installed_vllm_without_importing_it():
    pytest.importorskip("vllm")
    code = (
        "import sys; from qscope.generation import resolve_engine_kwargs as r; "
        "r('vllm', {'max_num_batched_tokens': 4096, 'kv_cache_dtype': 'auto'}, 0); "
        "print('vllm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    names = vllm_setting_names()
    assert {"tensor_parallel_size", "gpu_memory_utilization", "max_model_len"} <= names
    assert set(COMMON_VLLM_SETTINGS) <= names  # the fallback list is real vLLM settings


def test_settings_match_vllm_engine_args():
    pytest.importorskip("vllm")
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    assert vllm_setting_names() == {f.name for f in dataclasses.fields(EngineArgs)}
