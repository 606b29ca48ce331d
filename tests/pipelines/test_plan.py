"""Plans and configs, asserted on CPU without running anything (as ray.data.llm's CPU tests do)."""

from pathlib import Path

import pytest
import yaml

from qscope.errors import InputError
from qscope.operators import (
    Classify,
    EncodeSignatures,
    MineBySignature,
    Project,
    SampleByHash,
    ScoreTargetFeatures,
    SteeredGenerate,
    TopRows,
)
from qscope.pipelines import classify, expand, mine
from qscope.pipelines.config import ClassifyConfig, ExpandConfig, MineConfig, load_config
from qscope.pipelines.flow import Ref

# train_*.yaml are SAE-training configs (qscope train-sae), not pipeline configs.
CONFIGS = sorted(p for p in Path("configs").glob("*.yaml") if not p.name.startswith("train_"))


def test_demo_plan_stages_operators_and_resources():
    kind, cfg = load_config("configs/demo.yaml")
    assert kind == "expand"
    plan = expand.build_plan(cfg)
    assert plan.names == [
        "claim_output",
        "read_seeds",
        "encode_seeds",
        "encode_corpus",
        "seed_model",
        "cutoff",
        "mine",
        "index",
        "build_prompts",
        "generate",
        "score",
        "select",
        "describe_features",
        "write",
    ]
    ops = {s.name: [st.operator for st in s.steps] for s in plan.stages if s.steps}
    assert ops == {
        "encode_seeds": [EncodeSignatures],
        "encode_corpus": [EncodeSignatures],
        "seed_model": [SampleByHash],
        "mine": [MineBySignature, TopRows],
        "generate": [SteeredGenerate],
        "score": [ScoreTargetFeatures],
    }
    for s in plan.stages:
        for step in s.steps:
            kw = step.map_batches_kwargs()
            # 2-core machines: whole-CPU actors deadlock Ray Data, so every default is fractional
            assert 0 < kw["num_cpus"] < 1 and kw["fn"] is step.operator and kw["batch_format"] == "pyarrow"
            assert "num_gpus" not in kw
    enc = plan.stage("encode_corpus").steps[0].map_batches_kwargs()["fn_constructor_kwargs"]
    assert enc["model_spec"]["max_length"] == 48 and enc["pooling"] == "max"
    gen = plan.stage("generate").steps[0].kwargs
    assert gen["engine"] == "hf" and gen["max_new_tokens"] == cfg.synthesis.max_new_tokens
    assert plan.stage("score").steps[0].kwargs["seed_model"] == Ref("seed_model")
    # what each stage reads and produces is part of the description: the whole data flow is visible
    assert plan.stage("mine").reads == ("signatures", "seed_model")
    assert plan.stage("select").reads == ("scored", "cutoff")
    # mining.min_score: auto mines with the cut-off estimated for mining.target_precision
    cfg.mining.min_score = "auto"
    auto = expand.build_plan(cfg)
    assert auto.stage("mine").reads == ("signatures", "seed_model", "cutoff")
    assert auto.stage("mine").steps[0].kwargs["min_score"] == Ref("cutoff_score")
    text = plan.describe()
    assert "SteeredGenerate(cpus=0.5" in text and text.count("\n") == len(plan.stages)
    assert "-> signatures: signature store out/demo/corpus_signatures" in text and "seed_model: SeedModel" in text


def test_plan_follows_config():
    cfg = ExpandConfig.from_dict(
        {
            "seeds": "s.jsonl",
            "corpus": "c.jsonl",
            "mining": {"enabled": False},
            "synthesis": {"engine": "vllm", "n_samples": 4},
            "resources": {"generate": {"num_cpus": 1, "num_gpus": 1, "concurrency": 2}},
        }
    )
    plan = expand.build_plan(cfg)
    assert "mine" not in plan.names and "generate" in plan.names
    kw = plan.stage("generate").steps[0].map_batches_kwargs()
    assert kw["num_gpus"] == 1 and kw["fn_constructor_kwargs"]["engine"] == "vllm"
    no_gen = expand.build_plan(ExpandConfig.from_dict({"seeds": "s", "corpus": "c", "synthesis": {"n_samples": 0}}))
    assert "generate" not in no_gen.names and "generated" not in no_gen.stage("score").reads


def test_a_stage_reading_what_nothing_produces_is_a_plan_error():
    from qscope.pipelines.plan import Plan, Stage

    with pytest.raises(ValueError, match=r"stage b reads \['x'\], produced by no earlier stage"):
        Plan(
            "p",
            None,
            [
                Stage("a", "driver", (), {"y": "int"}, lambda run: {"y": 1}),
                Stage("b", "driver", ("x",), {}, lambda run: None),
            ],
        )


def test_classify_and_mine_plans():
    c = classify.build_plan(ClassifyConfig(seeds="s", corpus="c", out="o.parquet"))
    assert c.names == [
        "claim_output",
        "read_seeds",
        "encode_seeds",
        "encode_corpus",
        "seed_model",
        "classify",
        "finalize",
    ]
    assert [s.operator for s in c.stage("classify").steps] == [Classify, Project]
    m = mine.build_plan(MineConfig(seeds="s", corpus="d", out="o"))
    assert m.names == ["claim_output", "read_seeds", "encode_corpus", "seed_model", "mine", "finish"]
    assert [s.operator for s in m.stage("mine").steps] == [MineBySignature, Project]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_roundtrips(path):
    kind, cfg = load_config(path)
    again = type(cfg).from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    raw = yaml.safe_load(path.read_text())
    raw.pop("pipeline", None)
    assert set(raw) <= set(cfg.to_dict())  # YAML keys map 1:1 onto dataclass fields


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(InputError, match=r"model: unknown key\(s\) \['sea'\]"):
        ExpandConfig.from_dict({"model": {"sea": "x"}})
    with pytest.raises(InputError, match="pooling must be one of"):
        ExpandConfig.from_dict({"signatures": {"pooling": "mean"}})
    with pytest.raises(InputError, match="num_cpus must be > 0"):
        ExpandConfig.from_dict({"resources": {"encode": {"num_cpus": 0}}})
    with pytest.raises(InputError, match="engine must be one of"):
        ExpandConfig.from_dict({"synthesis": {"engine": "gpt"}})
    with pytest.raises(InputError, match=r"method must be one of \['probe', 'centroid', 'knn'\], got 'svm'"):
        ClassifyConfig.from_dict({"method": "svm"})
    with pytest.raises(InputError, match="max_bad_fraction must be in"):
        MineConfig.from_dict({"max_bad_fraction": 2})
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: expand\nseeds: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("pipeline: train\n")
    with pytest.raises(InputError, match="unknown pipeline"):
        load_config(other)
