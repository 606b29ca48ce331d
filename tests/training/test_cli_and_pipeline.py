"""`qscope train-sae` and the Ray entrypoint's placement rule."""

from __future__ import annotations

import json

import pytest
import yaml

from qscope.cli import main
from qscope.sae import load_sae

LAYER = 3  # the layer of the synthetic caches in conftest.py (test modules cannot import conftest reliably)


def _write_config(make_config, tmp_path, **overrides) -> str:
    cfg = make_config(max_tokens=256 * 40, **overrides).to_dict()
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_train_sae_cli_json(make_config, tmp_path, capsys):
    config = _write_config(make_config, tmp_path, sae_id="test/l{layer}")
    assert main(["train-sae", config, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 40 and out["tokens"] == 40 * 256
    sae = load_sae(out["exported"][str(LAYER)])
    assert sae.cfg.sae_id == f"test/l{LAYER}" and sae.cfg.metadata["training_tokens"] == 40 * 256
    from qscope.training.cache import read_manifest

    assert (
        sae.cfg.metadata["distinct_training_tokens"] == read_manifest(yaml.safe_load(open(config))["cache"])["n_tokens"]
    )
    assert 0 < out["heldout"][str(LAYER)]["explained_variance"] <= 1


def test_train_sae_cli_bad_config_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"cache": str(tmp_path), "sae": {"k": 9000, "d_sae": 4096}}))
    assert main(["train-sae", str(path), "--json"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "TrainConfigError" and "exceeds d_sae" in err["message"]


def test_ray_placement_prefers_a_gpu_and_never_asks_a_whole_cpu_on_small_machines():
    from qscope.pipelines.train_sae import train_resources

    assert train_resources({"CPU": 16.0, "GPU": 1.0}) == {"num_gpus": 1, "num_cpus": 1}
    assert train_resources({"CPU": 2.0}) == {"num_cpus": 0.5}


@pytest.mark.slow
def test_ray_entrypoint_trains_in_a_task(make_config, tmp_path):
    from qscope.pipelines.runtime import shutdown_ray
    from qscope.pipelines.train_sae import run

    try:
        out = run(make_config(max_tokens=256 * 10).to_dict())
    finally:
        shutdown_ray()
    assert out["steps"] == 10 and str(LAYER) in out["exported"]
