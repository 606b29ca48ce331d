"""Pieces of the vLLM engine that need no engine: request payloads, cache salts, SAEs handed over by path."""

from __future__ import annotations

import pytest

from qscope.steering import activate, suppress
from qscope.steering.compiled import SteeringPlan, compile_plan


def _plan(sae, iv) -> SteeringPlan:
    return compile_plan(iv.validate({15: sae}), {})


def test_request_args_carry_the_plan_and_its_key(random_sae_factory):
    from qscope.generation.vllm_engine import _request_args
    from qscope.generation.vllm_worker import REQUEST_KEY

    sae = random_sae_factory(d_sae=256, k=8)
    plan = _plan(sae, activate(3, 2.0, scale=5.0) + suppress(4, 1.0))
    args = _request_args(plan)[REQUEST_KEY]
    assert SteeringPlan.from_payload(args["plan"]) == plan and args["plan_key"] == plan.key()
    assert _request_args(None) is None
    other = _plan(sae, activate(3, 2.5, scale=5.0))
    assert other.key() != plan.key() and _plan(sae, activate(3, 2.0, scale=5.0) + suppress(4, 1.0)).key() == plan.key()


def test_prefix_cache_salt_separates_interventions_and_prompt_lengths(random_sae_factory):
    pytest.importorskip("vllm")
    from qscope.generation.vllm_engine import VLLMEngine

    engine = object.__new__(VLLMEngine)  # only the prompt builder, no engine process
    sae = random_sae_factory(d_sae=256, k=8)
    plan = _plan(sae, activate(3, 2.0, scale=5.0))
    engine.prefix_caching = False
    assert "cache_salt" not in engine._prompt([1, 2, 3], plan)
    engine.prefix_caching = True
    assert "cache_salt" not in engine._prompt([1, 2, 3], None)  # unsteered requests share the normal cache
    salts = {
        engine._prompt([1, 2, 3], plan)["cache_salt"],
        engine._prompt([1, 2, 3, 4], plan)["cache_salt"],
        engine._prompt([1, 2, 3], _plan(sae, activate(3, 1.0, scale=5.0)))["cache_salt"],
    }
    assert len(salts) == 3


def test_in_memory_sae_reaches_workers_by_path(random_sae_factory, tmp_path, monkeypatch):
    from qscope.generation.vllm_engine import _sae_specs
    from qscope.generation.vllm_worker import sae_fingerprint, same_fingerprint
    from qscope.sae import load_sae

    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path))
    sae = random_sae_factory(d_sae=256, k=8, seed=11)
    objects, specs = _sae_specs({15: sae})
    spec = specs["15"]
    assert objects[15] is sae and str(tmp_path) in spec["spec"] and "state" not in spec  # a path, no tensors
    again = load_sae(spec["spec"], layer=15)  # what the worker does
    assert same_fingerprint(sae_fingerprint(again), spec["fingerprint"])
    assert _sae_specs({15: sae})[1]["15"]["spec"] == spec["spec"]  # content-addressed: written once
    import torch

    with torch.no_grad():
        again.W_dec[0, 0] += 1e-3
    assert not same_fingerprint(sae_fingerprint(again), spec["fingerprint"])  # a changed file is caught


def test_sae_spec_strings_pass_through(random_sae_factory, tmp_path):
    from qscope.generation.vllm_engine import _sae_specs

    path = tmp_path / "sae"
    random_sae_factory(d_sae=256, k=8, seed=2).save(path)
    objects, specs = _sae_specs({15: str(path)})
    assert specs["15"]["spec"] == str(path) and objects[15].d_sae == 256
