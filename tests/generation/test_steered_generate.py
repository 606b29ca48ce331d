"""SteeredGenerate: settings checked at construction, Ray plan for multi-GPU vLLM engines, one engine call per
batch with per-row interventions (HF here; vLLM in the `vllm`-marked test at the end)."""

from __future__ import annotations

import functools
import os

import pyarrow as pa
import pytest

from qscope.errors import InputError
from qscope.operators import SteeredGenerate
from qscope.operators.generate import placement_bundles, placement_group_strategy


def test_bad_engine_settings_fail_at_construction():
    with pytest.raises(InputError, match="tensor_paralel_size"):
        SteeredGenerate(engine="vllm", engine_kwargs={"tensor_paralel_size": 2})
    with pytest.raises(InputError, match="gpu_memory_utilization"):
        SteeredGenerate(engine="vllm", engine_kwargs={"gpu_memory_utilization": 0.9}, resources={"num_gpus": 0.5})


def test_hf_plan_is_the_base_plan():
    kw = SteeredGenerate.map_batches_kwargs({"engine": "hf"}, {"num_cpus": 0.5}, batch_size=8)
    assert "ray_remote_args_fn" not in kw and "num_gpus" not in kw
    assert kw["fn"] is SteeredGenerate and kw["num_cpus"] == 0.5


def test_fractional_gpu_engine_gets_its_memory_share():
    kw = SteeredGenerate.map_batches_kwargs({"engine": "vllm"}, {"num_gpus": 0.5, "concurrency": 2})
    assert kw["num_gpus"] == 0.5 and "ray_remote_args_fn" not in kw
    engine_kwargs = kw["fn_constructor_kwargs"]["engine_kwargs"]
    assert engine_kwargs["gpu_memory_utilization"] == pytest.approx(0.45) and engine_kwargs["dtype"] == "bfloat16"


def test_tensor_parallel_mp_engine_holds_its_gpus():
    kw = SteeredGenerate.map_batches_kwargs(
        {"engine": "vllm", "engine_kwargs": {"tensor_parallel_size": 2}}, {"num_gpus": 2}
    )
    assert kw["num_gpus"] == 2 and "ray_remote_args_fn" not in kw
    assert kw["fn_constructor_kwargs"]["engine_kwargs"]["distributed_executor_backend"] == "mp"


def test_tensor_parallel_ray_engine_gets_a_placement_group_per_actor():
    kw = SteeredGenerate.map_batches_kwargs(
        {
            "engine": "vllm",
            "engine_kwargs": {
                "tensor_parallel_size": 2,
                "pipeline_parallel_size": 2,
                "distributed_executor_backend": "ray",
            },
        },
        {"num_gpus": 4, "concurrency": 3},
    )
    assert kw["num_gpus"] == 0  # the actor reserves nothing; vLLM's Ray workers take the bundles
    fn = kw["ray_remote_args_fn"]
    assert isinstance(fn, functools.partial) and fn.func is placement_group_strategy
    assert fn.args == (placement_bundles(4),) == ([{"GPU": 1, "CPU": 1}] * 4,)
    import pickle

    assert pickle.loads(pickle.dumps(fn)).args == fn.args  # Ray ships it to the scheduler


def test_placement_group_strategy_on_real_ray():
    """The function Ray Data calls per actor creates a placement group of the planned bundles (logical GPUs)."""
    ray = pytest.importorskip("ray")
    from ray._private.services import find_bootstrap_address

    if not ray.is_initialized() and (os.environ.get("RAY_ADDRESS") or find_bootstrap_address(None)):
        pytest.skip("another Ray cluster runs on this machine (its resources are not ours to place groups on)")
    started = not ray.is_initialized()
    if started:
        # a private cluster even if one runs on this machine (joining it would refuse num_gpus)
        ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = placement_group_strategy(placement_bundles(2))
        strategy = args["scheduling_strategy"]
        pg = strategy.placement_group
        assert strategy.placement_group_capture_child_tasks is True
        assert pg.bundle_specs == [{"GPU": 1.0, "CPU": 1.0}] * 2
        if started:  # our own cluster has the 2 logical GPUs: the group really gets placed
            assert pg.wait(timeout_seconds=60)
        ray.util.remove_placement_group(pg)
    finally:
        if started:
            ray.shutdown()


def test_mixed_batch_is_one_engine_call(lm, random_sae_factory, monkeypatch):
    """Rows with different interventions (and none) go to one `generate` call, results in row order."""
    from qscope.generation import make_engine
    from qscope.steering import Intervention

    op = SteeredGenerate(engine="hf", max_new_tokens=4)
    op.engine = make_engine("hf", lm=lm, saes={15: random_sae_factory(d_sae=512, k=8, seed=5)}, batch_size=4)
    calls = []
    generate = op.engine.generate
    monkeypatch.setattr(
        op.engine, "generate", lambda prompts, **kw: calls.append(kw["intervention"]) or generate(prompts, **kw)
    )
    a, b = Intervention().activate(3, 4.0, scale=10.0), Intervention().activate(7, 4.0, scale=10.0)
    rows = {
        "prompt": ["Say hi.", "Name a colour.", "Say hi.", "Count to three."],
        "intervention": [a.to_json(), "", b.to_json(), a.to_json()],
    }
    out = op.process(pa.table(rows))  # the engine is set: no setup()
    assert len(calls) == 1 and calls[0] == [a, None, b, a]
    assert out.column("prompt").to_pylist() == rows["prompt"] and out.num_rows == 4
    alone = generate(["Say hi."], intervention=b, max_new_tokens=4)[0]
    assert out.column("n_new_tokens").to_pylist()[2] == len(alone.token_ids)
    assert out.column("text").to_pylist()[2] == alone.text.strip()


@pytest.mark.vllm
def test_vllm_actor_loads_no_hf_model(monkeypatch):
    """A vLLM actor holds the tokenizer and the SAE only; the worker loads the SAE itself from the spec."""
    pytest.importorskip("vllm")
    from qscope.models import LanguageModel
    from qscope.sae import DEFAULT_SAE_ID, shipped_sae_ids
    from qscope.steering import Intervention

    if DEFAULT_SAE_ID not in shipped_sae_ids():
        pytest.skip("the default SAE is not shipped")

    def refuse(*_a, **_k):
        raise AssertionError("a vLLM actor must not load the HF model")

    monkeypatch.setattr(LanguageModel, "load", refuse)
    op = SteeredGenerate(engine="vllm", max_new_tokens=6, engine_kwargs={"max_model_len": 512})
    try:
        iv = Intervention().activate(100, 2.0).to_json()
        out = op(pa.table({"prompt": ["Say hi.", "Name a colour.", "Say hi."], "intervention": ["", iv, iv]}))
        assert out.num_rows == 3 and set(out.column("engine").to_pylist()) == {"vllm"}
        info = op.engine.worker_info()
        assert info["saes"] == [15] and info["cached_plans"] == 1
        assert not hasattr(op.engine, "lm")
    finally:
        op.teardown()
