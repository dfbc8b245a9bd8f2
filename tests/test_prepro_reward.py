"""machina.prepro.RewardNormalizer and BasePrePro.update_ob_rms: statistics equal numpy's over
a slow reference; the scaling, clipping, saving and errors; with real sampled episodes."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.pols import RandomPol
from machina.prepro import BasePrePro, RewardNormalizer
from machina.samplers import EpiSampler


def reference_returns(rews, gamma):
    """Obviously right: R_t = gamma * R_{t-1} + r_t, one step at a time."""
    out, ret = [], 0.0
    for r in rews:
        ret = gamma * ret + float(r)
        out.append(ret)
    return np.array(out)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("length", [1, 2, 257])
def test_discounted_returns_match_the_step_by_step_loop(gamma, length):
    rews = np.random.default_rng(length).normal(size=length)
    got = RewardNormalizer(gamma).discounted_returns(rews)
    np.testing.assert_allclose(got, reference_returns(rews, gamma), rtol=1e-12, atol=1e-12)


def test_statistics_equal_numpy_over_every_step_of_every_episode():
    rng = np.random.default_rng(0)
    epis = [{"rews": rng.normal(1.0, 2.0, size=n)} for n in (1, 5, 300, 2)]
    norm = RewardNormalizer(0.9)
    norm.update_with_epis(epis[:2])
    norm.update_with_epis(epis[2:])  # batches in any split give the same statistics
    rets = np.concatenate([reference_returns(e["rews"], 0.9) for e in epis])
    np.testing.assert_allclose(norm.ret_rms.mean, rets.mean(), rtol=1e-12)
    np.testing.assert_allclose(norm.ret_rms.var, rets.var(), rtol=1e-10)
    assert norm.ret_rms.count == len(rets)
    np.testing.assert_allclose(norm.scale, np.sqrt(rets.var() + norm.eps), rtol=1e-12)


def test_normalize_scales_clips_and_leaves_the_input_untouched():
    norm = RewardNormalizer(1.0, clip=3.0)
    assert norm.scale == 1.0  # identity before any statistics
    norm.update(np.array([2.0, -2.0]))  # returns 2, 0: var 1
    epis = [{"rews": np.array([1.0, 10.0, -10.0]), "obs": np.zeros((3, 2))}]
    out = norm.normalize_epis(epis)
    # float32 output: compare within a few float32 ulps of the float64 value
    np.testing.assert_allclose(out[0]["rews"], [1.0 / np.sqrt(1 + 1e-8), 3.0, -3.0], rtol=1e-6)
    assert out[0]["rews"].dtype == np.float32
    np.testing.assert_array_equal(epis[0]["rews"], [1.0, 10.0, -10.0])
    assert out[0]["obs"] is epis[0]["obs"]


def test_state_dict_round_trips_through_torch_save_as_tensors(tmp_path):
    norm = RewardNormalizer(0.99)
    norm.update(np.random.default_rng(1).normal(size=50))
    path = tmp_path / "rew_norm.pt"
    torch.save(norm.state_dict(), path)
    loaded = RewardNormalizer(0.99)
    loaded.load_state_dict(torch.load(path))  # weights_only=True by default
    assert loaded.ret_rms.count == 50
    assert loaded.scale == norm.scale
    rews = np.array([0.5, -1.0])
    np.testing.assert_array_equal(loaded.normalize(rews), norm.normalize(rews))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="gamma"):
        RewardNormalizer(1.5)
    with pytest.raises(ValueError, match="clip"):
        RewardNormalizer(0.9, clip=0.0)
    with pytest.raises(ValueError, match="eps"):
        RewardNormalizer(0.9, eps=0.0)
    with pytest.raises(KeyError, match="episode 1 has no 'rews'"):
        RewardNormalizer().update_with_epis([{"rews": np.ones(2)}, {"obs": np.ones(2)}])
    with pytest.raises(ValueError, match=r"rews: expected shape \(T,\)"):
        RewardNormalizer().discounted_returns(np.ones((2, 2)))


def test_non_finite_rewards_are_refused_and_the_statistics_kept():
    norm = RewardNormalizer(0.99)
    norm.update(np.arange(5.0))
    scale = norm.scale
    with pytest.raises(ValueError, match="rews: expected finite rewards, given nan"):
        norm.update(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="epis: episode 1's rews: expected finite rewards"):
        norm.update_with_epis([{"rews": np.ones(2)}, {"rews": np.array([0.0, np.inf])}])
    # finite rewards whose returns' variance overflows float64
    with pytest.raises(ValueError, match=r"rews \(their discounted returns\): .*overflow"):
        norm.update(np.array([1e200, -1e200, 1e200]))
    assert norm.ret_rms.count == 5 and norm.scale == scale


def test_update_ob_rms_is_update_with_exact_statistics():
    space = gym.spaces.Box(-np.inf, np.inf, (3,))
    a, b = BasePrePro(space), BasePrePro(space)
    obs = np.random.default_rng(2).normal(4.0, 3.0, size=(40, 3))
    for ob in obs:  # one observation per call, as the original's update_ob_rms
        a.update_ob_rms(ob)
    b.update(obs)
    np.testing.assert_allclose(a.ob_rm, obs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(a.ob_rv, obs.var(axis=0), rtol=1e-10)
    np.testing.assert_allclose(a.prepro(obs), b.prepro(obs), rtol=1e-6)


def test_with_sampled_episodes():
    """Observation prepro in the sampler (its worker processes are covered in test_prepro.py);
    rewards scaled on the learner's side, from the raw rewards the episodes keep."""
    env = gym.make("Pendulum-v1")
    pol = RandomPol(env.observation_space, env.action_space)
    prepro = BasePrePro(env.observation_space)
    norm = RewardNormalizer(0.99)
    with EpiSampler(env, pol, prepro=prepro, seed=3) as sampler:
        epis = sampler.sample(pol, max_epis=2)
    prepro.update_with_epis(epis)
    norm.update_with_epis(epis)
    raw = np.concatenate([e["rews"] for e in epis])
    rets = np.concatenate([reference_returns(e["rews"], 0.99) for e in epis])
    np.testing.assert_allclose(norm.scale, np.sqrt(rets.var() + 1e-8), rtol=1e-9)
    scaled = np.concatenate([e["rews"] for e in norm.normalize_epis(epis)])
    np.testing.assert_allclose(scaled, np.clip(raw / norm.scale, -10, 10), rtol=1e-6)
    assert prepro.ob_rms.count == len(raw)


def test_statistics_take_bfloat16_tensors_and_tensors_that_require_grad():
    """As BasePrePro's: RewardNormalizer.load_state_dict went through np.asarray (bfloat16
    raised, a tensor requiring grad too); BasePrePro.update refused bfloat16 observations;
    a count past int64 raised numpy's TypeError instead of being checked."""
    norm = RewardNormalizer(gamma=0.9)
    norm.update(np.array([1.0, 2.0, 4.0]))
    state = norm.state_dict()
    for convert in (lambda t: t.to(torch.bfloat16), lambda t: t.clone().requires_grad_()):
        other = RewardNormalizer(gamma=0.9)
        other.load_state_dict({**state, "mean": convert(state["mean"]), "var": state["var"]})
        assert other.ret_rms.count == norm.ret_rms.count
    pp = BasePrePro(gym.spaces.Box(-1, 1, (3,)))
    obs = torch.tensor([[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]])
    pp.update(obs.to(torch.bfloat16))  # these values are exact in bfloat16
    ref = BasePrePro(gym.spaces.Box(-1, 1, (3,)))
    ref.update(obs.numpy())
    np.testing.assert_array_equal(pp.ob_rm, ref.ob_rm)
    big = {**pp.state_dict(), "count": 2**70}
    ref.load_state_dict(big)
    assert ref.ob_rms.count == 2**70
    with pytest.raises(ValueError, match=r"state\['count'\]: expected a whole number"):
        ref.load_state_dict({**big, "count": 2.5})
