"""A sparse-dictionary problem with a known dictionary: x = Σ c_i d_i over a few random atoms, plus noise."""

from __future__ import annotations

import numpy as np


def sparse_dictionary_data(
    n: int,
    d_in: int = 64,
    n_atoms: int = 256,
    active: int = 6,
    noise: float = 0.01,
    seed: int = 0,
    dictionary_seed: int = 1234,
) -> tuple[np.ndarray, np.ndarray]:
    atoms = np.random.default_rng(dictionary_seed).standard_normal((n_atoms, d_in))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    # Each token uses `active` atoms with positive magnitudes; a constant offset checks b_dec.
    idx = np.stack([rng.choice(n_atoms, active, replace=False) for _ in range(n)])
    coef = rng.uniform(0.5, 2.0, (n, active))
    x = np.einsum("na,nad->nd", coef, atoms[idx]) + 0.3 + noise * rng.standard_normal((n, d_in))
    return (x * 40).astype(np.float32), atoms.astype(np.float32)  # *40: a raw scale the normalization must undo
