"""Synthetic activation caches shared by the training tests (built once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import sparse_dictionary_data  # noqa: E402

from qscope.training import TrainConfig, write_activation_cache  # noqa: E402

LAYER = 3


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Train / held-out caches of a 128-atom dictionary in 64 dimensions, 4 atoms per token."""
    root = tmp_path_factory.mktemp("synthetic")
    x, atoms = sparse_dictionary_data(40_000, d_in=64, n_atoms=128, active=4, seed=0)
    held, _ = sparse_dictionary_data(8_000, d_in=64, n_atoms=128, active=4, seed=1)
    train = write_activation_cache(root / "train", {LAYER: x}, shard_tokens=15_000)
    heldout = write_activation_cache(root / "heldout", {LAYER: held})
    return {"train": train, "heldout": heldout, "atoms": atoms, "root": root}


@pytest.fixture
def make_config(synthetic, tmp_path):
    def make(**overrides) -> TrainConfig:
        sae = {
            "architecture": "topk",
            "d_sae": 256,
            "k": 4,
            "lr": 1e-2,
            "warmup_steps": 10,
            "dead_tokens": 10_000,
            **overrides.pop("sae", {}),
        }
        base = dict(
            layers=[LAYER],
            cache=str(synthetic["train"]),
            heldout_cache=str(synthetic["heldout"]),
            heldout_tokens=8_000,
            out=str(tmp_path / "run"),
            batch_size=256,
            max_tokens=256 * 200,
            checkpoint_every=0,
            progress=False,
            num_threads=1,
            sae=sae,
        )
        return TrainConfig.from_dict({**base, **overrides})

    return make
