"""Every machina environment wrapper passes gymnasium's env checker with nothing to say
but its general advice (issue 11): no deprecated ``seed()``, specs that record the wrappers'
arguments, seeded resets that reproduce."""

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from machina.envs import AcInObEnv, C2DEnv, GymEnv, RewInObEnv, SkillEnv

# Advice the checker gives any environment of this shape, not a fault of the wrapper:
# Box bounds, and that a wrapper differs from its unwrapped environment.
ADVICE = ("recommend using a symmetric and normalized", "infinity", "different from the unwrapped")

WRAPPERS = {
    "GymEnv(id)": lambda: GymEnv("Pendulum-v1", max_episode_steps=50),
    "GymEnv(instance)": lambda: GymEnv(gym.make("CartPole-v1")),
    "C2DEnv": lambda: C2DEnv(GymEnv("Pendulum-v1"), n_bins=5),
    "SkillEnv": lambda: SkillEnv(GymEnv("Pendulum-v1"), 4),
    "AcInObEnv": lambda: AcInObEnv(GymEnv("Pendulum-v1")),
    "RewInObEnv": lambda: RewInObEnv(GymEnv("Pendulum-v1")),
    "composed": lambda: C2DEnv(SkillEnv(RewInObEnv(AcInObEnv(GymEnv("Pendulum-v1"))), 3)),
}


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrapper_passes_check_env(name):
    env = WRAPPERS[name]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    complaints = [str(w.message) for w in caught if not any(a in str(w.message) for a in ADVICE)]
    assert complaints == []
    assert not callable(getattr(env, "seed", None))
    spec = env.spec
    assert spec is not None and spec.id in ("Pendulum-v1", "CartPole-v1")
    env.close()
