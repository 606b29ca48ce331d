"""The one config loader (`qscope.config`): Literal choices, `--set` overrides, renamed keys, the training config."""

from __future__ import annotations

import typing

import pytest
import yaml

from qscope.errors import InputError
from qscope.pipelines.config import ClassifyConfig, ExpandConfig, MineConfig, load_config
from qscope.training import TrainConfig, TrainConfigError


@pytest.mark.parametrize(
    "data, message",
    [
        ({"executor": "rau"}, r"executor must be one of \['ray', 'local'\], got 'rau'"),
        ({"mining": {"method": "svm"}}, r"mining.method must be one of \['probe', 'centroid', 'knn'\], got 'svm'"),
        ({"model": {"dtype": "fp8"}}, r"model.dtype must be one of \['auto', 'bfloat16', 'float16', 'float32'\]"),
        ({"targets": {"method": "x"}}, r"targets.method must be one of \['logodds', 'meandiff'\], got 'x'"),
        ({"mining": {"min_score": "high"}}, r"mining.min_score must be one of \['auto'\] or a number, got 'high'"),
        ({"filter": {"min_seed_score": True}}, r"filter.min_seed_score must be one of \['auto'\] or a number or null"),
    ],
)
def test_a_bad_choice_names_the_key_and_the_allowed_values(data, message):
    with pytest.raises(InputError, match=message):
        ExpandConfig.from_dict(data)


def test_a_bad_choice_in_a_file_names_the_file_too(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("pipeline: classify\nexecutor: remote\n")
    with pytest.raises(InputError, match=r"run.yaml: executor must be one of \['ray', 'local'\], got 'remote'"):
        load_config(path)
    with pytest.raises(InputError, match="executor must be one of"):  # made in Python: checked all the same
        ClassifyConfig(executor="remote")


def test_literal_choices_match_what_the_code_accepts():
    from qscope.classify import METHODS
    from qscope.features import POOLINGS
    from qscope.generation import ENGINES
    from qscope.operators.dedup import MEASURES
    from qscope.pipelines.config_sections import ClassifierMethod, DedupConfig, SignatureConfig, SynthesisConfig

    def choices(cls, name):
        return set(typing.get_args(typing.get_type_hints(cls)[name]))

    assert choices(SignatureConfig, "pooling") == set(POOLINGS)
    assert choices(SynthesisConfig, "engine") == set(ENGINES)
    assert choices(DedupConfig, "measure") == set(MEASURES)
    assert set(typing.get_args(ClassifierMethod)) == set(METHODS)


def test_set_overrides_nested_keys_with_yaml_typed_values():
    cfg = ExpandConfig.from_dict(
        {"synthesis": {"n_samples": 4}},
        overrides=[
            "synthesis.n_samples=8",
            "synthesis.temperature=0.25",
            "mining.enabled=false",
            "model.layer=null",
            "resources.encode.concurrency=2",
            "targets.features=[3, 5]",
            "filter.min_seed_score=auto",
            "synthesis.engine_kwargs.max_model_len=512",
            "out=2024",
        ],
    )
    assert cfg.synthesis.n_samples == 8 and cfg.synthesis.temperature == 0.25
    assert cfg.mining.enabled is False and cfg.model.layer is None and cfg.resources.encode.concurrency == 2
    assert cfg.targets.features == [3, 5] and cfg.filter.min_seed_score == "auto"
    assert cfg.synthesis.engine_kwargs == {"max_model_len": 512}
    assert cfg.out == "2024"  # a string field keeps the text: a path named 2024 is not a number


def test_set_overrides_are_checked_like_the_yaml():
    with pytest.raises(
        InputError,
        match=r"--set synthesis.n_sample=3: unknown key 'n_sample' under synthesis; "
        r"valid keys: \[.*'n_samples'",
    ):
        ExpandConfig.from_dict({}, overrides=["synthesis.n_sample=3"])
    with pytest.raises(InputError, match=r"--set bogus=1: unknown key 'bogus'; valid keys"):
        MineConfig.from_dict({}, overrides=["bogus=1"])
    with pytest.raises(InputError, match="seeds is a value, not a section"):
        ExpandConfig.from_dict({}, overrides=["seeds.path=x"])
    with pytest.raises(InputError, match="expected key=value"):
        ExpandConfig.from_dict({}, overrides=["synthesis.n_samples"])
    with pytest.raises(InputError, match=r"synthesis.engine must be one of \['hf', 'vllm'\], got 'gpt'"):
        ExpandConfig.from_dict({}, overrides=["synthesis.engine=gpt"])


def test_a_renamed_key_still_loads_with_a_warning():
    with pytest.warns(DeprecationWarning, match="n_targets is deprecated: use targets.n_features"):
        cfg = MineConfig.from_dict({"n_targets": 5})
    assert cfg.targets.n_features == 5
    with pytest.warns(DeprecationWarning):
        assert MineConfig.from_dict({}, overrides=["n_targets=4"]).n_targets == 4
    with pytest.raises(InputError, match="same setting"), pytest.warns(DeprecationWarning):
        MineConfig.from_dict({"n_targets": 5, "targets": {"n_features": 6}})
    with pytest.warns(DeprecationWarning, match="use qscope.operators.ModelSpec"):
        from qscope.pipelines.config import ModelConfig
    assert ModelConfig().to_dict() == ExpandConfig().model.to_dict()


def test_the_training_config_loads_through_the_same_loader(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        yaml.safe_dump({"layers": [3], "corpus": "c.parquet", "sae": {"d_sae": 64, "k": 4, "betas": [0.8, 0.9]}})
    )
    cfg = TrainConfig.from_yaml(path, overrides=["sae.k=8", "max_tokens=4096"])
    assert (cfg.sae.k, cfg.max_tokens, cfg.sae.betas) == (8, 4096, (0.8, 0.9))
    assert TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    with pytest.raises(TrainConfigError, match=r"train.yaml: sae.architecture must be one of \['topk', 'batchtopk'\]"):
        TrainConfig.from_yaml(path, overrides=["sae.architecture=gated"])
    with pytest.raises(TrainConfigError, match=r"train.yaml: sae: unknown key\(s\) \['kk'\]"):
        path.write_text("sae: {kk: 3}\n")
        TrainConfig.from_yaml(path)
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        path.write_text("layers: [3\n")
        TrainConfig.from_yaml(path)


def test_a_section_given_in_part_keeps_the_rest_of_its_field_default():
    """`resources: {light: {batch_size: 512}}` keeps light's own defaults (0.25 CPU, local_below), and classify's
    `signatures: {top_n: 128}` stays sum-pooled with the hidden state: only the keys given change."""
    from qscope.pipelines.config import ClassifyConfig

    c = ClassifyConfig.from_dict(
        {"seeds": "s", "corpus": "c", "signatures": {"top_n": 128}, "resources": {"light": {"batch_size": 512}}}
    )
    assert (c.signatures.pooling, c.signatures.top_n, c.signatures.hidden_mean) == ("sum", 128, True)
    light = c.resources.light
    assert (light.batch_size, light.num_cpus, light.local_below) == (512, 0.25, 20000)
    assert c.resources.encode.num_cpus == 0.5  # a section not named keeps its default whole
    with pytest.raises(InputError, match="unknown key"):
        ClassifyConfig.from_dict({"seeds": "s", "corpus": "c", "signatures": {"top": 1}})
