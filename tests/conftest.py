"""Shared test fixtures: random episodes with terminated and truncated ends mixed."""

import numpy as np
import pytest


def make_random_epis(rng: np.random.Generator, n_epi: int, max_len: int = 30, ob_dim: int = 3):
    """Episodes of random length 1..max_len, ends terminated or truncated at random."""
    epis = []
    for _ in range(n_epi):
        length = int(rng.integers(1, max_len + 1))
        obs = rng.normal(size=(length + 1, ob_dim)).astype(np.float32)
        # Ends: terminated, truncated, or both at once (gymnasium allows it; terminated wins).
        end = int(rng.integers(3))
        terms = np.zeros(length, dtype=bool)
        truncs = np.zeros(length, dtype=bool)
        terms[-1] = end in (0, 2)
        truncs[-1] = end in (1, 2)
        epis.append(
            dict(
                obs=obs[:-1],
                next_obs=obs[1:],
                acs=rng.normal(size=(length, 2)).astype(np.float32),
                rews=rng.normal(size=length).astype(np.float32),
                terms=terms,
                truncs=truncs,
                dones=terms | truncs,
                a_is=dict(mean=rng.normal(size=(length, 2)).astype(np.float32)),
                e_is=dict(x_pos=rng.normal(size=length)),
            )
        )
    return epis


@pytest.fixture
def rng():
    return np.random.default_rng(0)
