import json

import pytest

from qscope.pipelines.config import ExpandConfig


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray per test session (2 CPU slots, no dashboard); operators ask for fractional CPUs."""
    import ray

    from qscope.pipelines.runtime import init_ray

    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory, random_sae_factory):
    path = tmp_path_factory.mktemp("sae") / "tiny-topk"
    random_sae_factory(d_sae=1024, k=16, seed=3).save(path)
    return path


@pytest.fixture(scope="session")
def demo_subset(tmp_path_factory):
    """6 seeds and a 24-row corpus (8 of them hamradio) from the committed demo data."""
    d = tmp_path_factory.mktemp("data")
    seeds = [json.loads(x) for x in open("data/demo/seeds.jsonl")][:6]
    corpus = [json.loads(x) for x in open("data/demo/corpus.jsonl")]
    ham = [r for r in corpus if r["section"] == "hamradio"][:8]
    rest = [r for r in corpus if r["section"] != "hamradio"][:16]
    (d / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    (d / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ham + rest))
    return d


@pytest.fixture
def tiny_expand_config(tmp_path, sae_dir, demo_subset):
    def make(**over):
        cfg = ExpandConfig.from_dict({
            "seeds": str(demo_subset / "seeds.jsonl"), "corpus": str(demo_subset / "corpus.jsonl"),
            "out": str(tmp_path / "out"), "executor": "local",
            "model": {"sae": str(sae_dir), "max_length": 24},
            "targets": {"n_features": 4},
            "mining": {"max_results": 5, "min_score": 0.0},
            "synthesis": {"n_samples": 2, "max_new_tokens": 6, "strengths": [0.0, 2.0], "temperature": 0.0},
            "filter": {"min_target_score": 0.0, "min_chars": 1},
            "resources": {"encode": {"batch_size": 32}, "score": {"batch_size": 32}},
        })
        for k, v in over.items():
            setattr(cfg, k, v)
        return cfg

    return make
