"""machina.prepro: running statistics equal numpy's over all data; normalisation in samplers."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.pols import RandomPol
from machina.prepro import BasePrePro, RunningMeanStd
from machina.samplers import EpiSampler


@pytest.mark.parametrize("sizes", [[1], [1, 1, 1], [5, 1, 300, 2], [1000, 3]])
def test_running_mean_std_equals_numpy_over_all_batches(sizes):
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, [1.0, 10.0, 0.1], size=(n, 3)) for n in sizes]
    rms = RunningMeanStd((3,))
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-10, atol=1e-14)
    assert rms.count == len(data)


def test_running_mean_std_merges_other_processes_statistics():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 2, 2)), rng.normal(5.0, 2.0, size=(50, 2, 2))
    left, right = RunningMeanStd((2, 2)), RunningMeanStd((2, 2))
    left.update(a)
    right.update(b)
    left.merge(right.mean, right.var, right.count)
    data = np.concatenate([a, b])
    np.testing.assert_allclose(left.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(left.var, data.var(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="x: expected shape"):
        left.update(np.zeros((3, 4)))


def test_running_mean_std_merges_numpy_integer_counts_and_checks_its_arguments():
    # counts of 70,000 as numpy int32 (e.g. read from an int32 array): their product wrapped
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 70_000), rng.normal(3.0, 1.0, 70_000)
    left, right = RunningMeanStd(), RunningMeanStd()
    left.update(a)
    right.update(b)
    left.merge(right.mean, right.var, np.int32(right.count))
    np.testing.assert_allclose(left.var, np.concatenate([a, b]).var(), rtol=1e-10)
    assert type(left.count) is int and left.count == 140_000
    with pytest.raises(ValueError, match="count: expected a whole number"):
        left.merge(left.mean, left.var, 2.5)
    with pytest.raises(ValueError, match=r"mean: expected shape \(\)"):
        left.merge(np.zeros(2), left.var, 3)
    with pytest.raises(ValueError, match="x: expected shape"):
        left.update(3.0)  # one sample is not a batch of samples


def assert_state_equal(rms, state):
    got = rms.state_dict()
    assert got["count"] == state["count"]
    np.testing.assert_array_equal(got["mean"], state["mean"])
    np.testing.assert_array_equal(got["var"], state["var"])


def test_running_mean_std_refuses_non_finite_input_and_overflow_unchanged():
    rms = RunningMeanStd((2,))
    rms.update(np.array([[1.0, 2.0], [3.0, 5.0]]))
    before = rms.state_dict()
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match=r"x: expected finite values, given (nan|inf)"):
            rms.update(np.array([[1.0, 2.0], [bad, 0.0]]))
    # finite values whose variance overflows float64
    with pytest.raises(ValueError, match=r"x: .*overflow.*unchanged"):
        rms.update(np.array([[1e200, 0.0], [-1e200, 0.0]]))
    with pytest.raises(ValueError, match="var: expected finite values"):
        rms.merge(np.zeros(2), np.array([np.nan, 1.0]), 3)
    with pytest.raises(ValueError, match="mean: expected finite values"):
        rms.merge(np.array([0.0, -np.inf]), np.ones(2), 3)
    with pytest.raises(ValueError, match=r"mean, var: .*overflow"):
        rms.merge(np.array([1e200, 0.0]), np.zeros(2), 3)
    with pytest.raises(ValueError, match=r"var: expected values >= 0, given min -1\.0"):
        rms.merge(np.zeros(2), np.array([1.0, -1.0]), 3)
    assert_state_equal(rms, before)
    prepro = BasePrePro(gym.spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match="obs: expected finite values"):
        prepro.update(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"episode 1's e_is\['raw_obs'\]: expected finite"):
        prepro.update_with_epis(
            [{"e_is": {"raw_obs": np.ones((2, 2))}}, {"e_is": {"raw_obs": np.full((1, 2), np.inf)}}]
        )
    assert prepro.ob_rms.count == 0


def test_running_mean_std_load_state_dict_checks_shapes_and_values():
    src = RunningMeanStd((3, 2))
    src.update(np.random.default_rng(0).normal(size=(10, 3, 2)))
    rms = RunningMeanStd((2, 3))
    rms.update(np.arange(12.0).reshape(2, 2, 3))
    good = rms.state_dict()
    # a transposed state has as many entries: a reshape took it
    with pytest.raises(
        ValueError, match=r"state\['mean'\]: expected shape \(2, 3\), given \(3, 2\)"
    ):
        rms.load_state_dict(src.state_dict())
    bad_values = [
        ("count", -5, r"state\['count'\]: expected a whole number >= 0, given -5"),
        ("var", -np.ones((2, 3)), r"state\['var'\]: expected values >= 0, given min -1"),
        ("var", np.full((2, 3), np.inf), r"state\['var'\]: expected finite values"),
        ("mean", np.full((2, 3), np.nan), r"state\['mean'\]: expected finite values"),
    ]
    for key, value, match in bad_values:
        with pytest.raises(ValueError, match=match):
            rms.load_state_dict({**good, key: value})
    assert_state_equal(rms, good)
    other = RunningMeanStd((2, 3))
    other.load_state_dict(good)
    assert_state_equal(other, good)


def test_prepro_normalises_clips_and_inverts():
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    prepro = BasePrePro(space)
    ob = np.array([1.0, -20.0, 3.0])
    np.testing.assert_allclose(prepro(ob), [1.0, -5.0, 3.0])  # no data: identity, clipped
    data = np.random.default_rng(2).normal([1.0, -2.0, 100.0], [2.0, 0.5, 30.0], (500, 3))
    prepro.update(data)
    std = data.std(axis=0)
    out = prepro(data[:4])
    np.testing.assert_allclose(out, (data[:4] - data.mean(0)) / (std + 1e-8), rtol=1e-5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(prepro.unprepro(out), data[:4], rtol=1e-5)
    assert np.abs(prepro(data * 100)).max() == 5.0
    off = BasePrePro(space, normalize_ob=False)
    np.testing.assert_array_equal(off.prepro_with_update(ob), ob.astype(np.float32))
    np.testing.assert_array_equal(off.ob_rm, ob)


def test_prepro_state_dict_round_trips_through_torch_save_and_loads_numpy_states(tmp_path):
    """torch.save(prepro.state_dict()) reads back with torch.load's default weights_only=True
    (a state of numpy arrays it refused), and a state of numpy arrays still loads."""
    space = gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32)
    prepro = BasePrePro(space)
    prepro.update(np.random.default_rng(5).normal(size=(40, 2, 3)))
    state = prepro.state_dict()
    assert all(isinstance(state[k], torch.Tensor) and state[k].dtype == torch.float64
               for k in ("mean", "var"))  # fmt: skip
    state["mean"] += 1.0  # a copy: the prepro's statistics stay
    torch.save(prepro.state_dict(), tmp_path / "prepro.pt")
    loaded = BasePrePro(space)
    loaded.load_state_dict(torch.load(tmp_path / "prepro.pt"))
    ob = np.random.default_rng(6).normal(size=(4, 2, 3))
    np.testing.assert_array_equal(loaded(ob), prepro(ob))
    assert loaded.ob_rms.count == prepro.ob_rms.count == 40
    from_numpy = BasePrePro(space)
    from_numpy.load_state_dict(prepro.ob_rms.state_dict())
    np.testing.assert_array_equal(from_numpy(ob), prepro(ob))


def _offset_pendulum():
    # Pendulum's observations moved far from 0 (mean ~30): with the default clip=5 the first
    # batch, normalised by the identity, is clipped to 5 everywhere.
    return gym.wrappers.TransformObservation(
        gym.make("Pendulum-v1", max_episode_steps=50),
        lambda ob: (ob * np.array([3.0, 1.0, 0.5]) + np.array([30.0, -12.0, 4.0])).astype(
            np.float32
        ),
        gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    )


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_sampler_normalises_with_prepro_and_stats_equal_numpy(num_parallel):
    """The policy's observations are normalised with the prepro's statistics as of each
    ``sample`` call (in workers too), and ``update_with_epis`` folds in exactly the raw
    observations (default clip=5, observations offset far from 0), checked against numpy
    over a prepro-less sample of the same episodes (RandomPol's actions do not depend on
    the observations)."""
    env = _offset_pendulum
    pol = RandomPol(gym.spaces.Box(-np.inf, np.inf, (3,)), gym.make("Pendulum-v1").action_space)
    rounds = 4
    with EpiSampler(env, pol, num_parallel=num_parallel, seed=3) as sampler:
        raw = [
            np.concatenate([epi["obs"] for epi in sampler.sample(pol, max_epis=4)])
            for _ in range(rounds)
        ]
    assert raw[0][:, 0].mean() > 20.0

    prepro = BasePrePro(gym.spaces.Box(-np.inf, np.inf, (3,), np.float32))
    assert prepro.clip == 5.0
    seen = []
    with EpiSampler(env, pol, num_parallel=num_parallel, seed=3, prepro=prepro) as sampler:
        for raw_obs in raw:
            mean, std = prepro.ob_rm.copy(), np.sqrt(prepro.ob_rv)
            epis = sampler.sample(pol, max_epis=4)
            obs = np.concatenate([epi["obs"] for epi in epis])
            expected = np.clip((raw_obs - mean) / (std + 1e-8), -5.0, 5.0)
            np.testing.assert_allclose(obs, expected, rtol=1e-4, atol=1e-4)
            prepro.update_with_epis(epis)
            seen.append(raw_obs)
            everything = np.concatenate(seen)
            np.testing.assert_allclose(prepro.ob_rm, everything.mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(prepro.ob_rv, everything.var(0), rtol=1e-5, atol=1e-6)
    # Once the statistics are learnt, nothing is clipped and the features are standardised.
    assert np.abs(obs).max() < 5.0
    assert np.abs(obs.mean(0)).max() < 1.0 and np.abs(obs.std(0) - 1.0).max() < 0.5
    with pytest.raises(KeyError, match=r"epis: episode 0 has no e_is\['raw_obs'\]"):
        prepro.update_with_epis([{"obs": raw[0], "e_is": {}}])
