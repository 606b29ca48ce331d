import pytest


@pytest.fixture(scope="session")
def spec(sae_dir):
    return {"sae": str(sae_dir), "max_length": 32}
