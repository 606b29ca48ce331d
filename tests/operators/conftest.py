import pytest


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory, random_sae_factory):
    """A small random SAE on the default model's layer 15, saved in SAELens layout (loaded by path)."""
    path = tmp_path_factory.mktemp("sae") / "tiny-topk"
    random_sae_factory(d_sae=1024, k=16, seed=3).save(path)
    return path


@pytest.fixture(scope="session")
def spec(sae_dir):
    return {"sae": str(sae_dir), "max_length": 32}
