"""One way to start a pipeline (`qscope.pipelines.launch`): `qscope run`, `qscope classify` and `python -m
qscope.pipelines.X` take the same overrides (flags, `--set KEY=VALUE`) and exit the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qscope.cli import EXIT_BAD_INPUT, main
from qscope.pipelines import classify, mine
from qscope.pipelines.launch import load_pipeline_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # configs/ paths are relative to the checkout


def _json(capfd) -> dict:
    out = capfd.readouterr().out
    assert out.count("\n") == 1, out
    return json.loads(out)


ENTRY_POINTS = {
    "qscope run": lambda *a: main(["run", "configs/mine.yaml", *a]),
    "python -m": lambda *a: mine.main(["--config", "configs/mine.yaml", *a]),
    "qscope classify": lambda *a: main(["classify", "--seeds", "s.jsonl", "--corpus", "c", "--out", "o.parquet", *a]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_set_overrides_reach_the_plan_from_every_entry_point(entry, capfd):
    assert (
        ENTRY_POINTS[entry]("--set", "resources.encode.batch_size=7", "--set", "executor=local", "--plan", "--json")
        == 0
    )
    doc = _json(capfd)
    assert "EncodeSignatures(cpus=0.5 x1, batch=7)" in doc["describe"]
    assert "(executor local)" in doc["describe"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_set_key_is_the_same_clear_error_everywhere(entry, capfd):
    assert ENTRY_POINTS[entry]("--set", "resources.encode.batch=7", "--plan", "--json") == EXIT_BAD_INPUT
    doc = _json(capfd)
    assert doc["error"] == "InputError"
    assert doc["message"].startswith(
        "--set resources.encode.batch=7: unknown key 'batch' under resources.encode; valid keys: ["
    )


def test_a_bad_config_value_exits_the_same_way_from_cli_and_python_m(tmp_path, capfd):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: classify\nmethod: svm\n")
    assert main(["run", str(bad), "--plan", "--json"]) == EXIT_BAD_INPUT
    from_cli = _json(capfd)
    assert classify.main(["--config", str(bad), "--plan", "--json"]) == EXIT_BAD_INPUT
    assert (
        _json(capfd)
        == from_cli
        == {"error": "InputError", "message": "bad.yaml: method must be one of ['probe', 'centroid', 'knn'], got 'svm'"}
    )


def test_flags_and_set_become_config_keys():
    """`qscope classify`'s model flags come from the shared helper and set `model.*`; --set is applied last."""
    from qscope.cli import build_parser
    from qscope.cli.classify import ARG_KEYS
    from qscope.cli.common import config_overrides

    args = build_parser().parse_args(
        [
            "classify",
            "--seeds",
            "s",
            "--corpus",
            "c",
            "--out",
            "o.parquet",
            "--model",
            "smollm2-135m",
            "--layer",
            "0",
            "--max-length",
            "20",
            "--allow-model-mismatch",
            "-k",
            "2",
            "--signatures",
            "store",
            "--set",
            "k=9",
            "--set",
            "model.dtype=float32",
            "--set",
            "resources.light.local_below=0",
        ]
    )
    kind, cfg = load_pipeline_config("classify", None, config_overrides(args, ARG_KEYS))
    assert (cfg.seeds, cfg.corpus, cfg.out, cfg.corpus_signatures) == ("s", "c", "o.parquet", "store")
    assert (cfg.model.model, cfg.model.layer, cfg.model.max_length, cfg.model.allow_model_mismatch) == (
        "smollm2-135m",
        0,
        20,
        True,
    )
    assert (cfg.k, cfg.model.dtype, cfg.resources.light.local_below) == (9, "float32", 0)
    assert cfg.model.sae is None and cfg.executor == "ray"  # flags not given leave the config alone


def test_the_yaml_is_read_first_then_flags_then_set():
    kind, cfg = load_pipeline_config(
        None, "configs/demo.yaml", [("out", "elsewhere"), "out=last", "synthesis.strengths=[0.5]"]
    )
    assert kind == "expand" and cfg.out == "last" and cfg.synthesis.strengths == [0.5]
    assert cfg.model.max_length == 48  # from the YAML
