"""ef.normalize_obs_and_acs and traj_functional.normalize_obs_and_acs against numpy, and their
statistics in MPCPol with a bare dynamics net (the original machina's model-based flow)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.nets import ModelNet
from machina.pols import RandomPol
from machina.pols.mpc_pol import MPCPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj import traj_functional as tf

STATS = ("mean_obs", "std_obs", "mean_acs", "std_acs")


def scaled_epis(rng, n_epi=6):
    """Random episodes whose dimensions have distinct offsets and scales."""
    epis = make_random_epis(rng, n_epi)
    for epi in epis:
        for key in ("obs", "next_obs"):
            epi[key] = (epi[key] * [1.0, 5.0, 0.1] + [3.0, -2.0, 0.5]).astype(np.float32)
        epi["acs"] = (epi["acs"] * [0.3, 4.0] + [-1.0, 7.0]).astype(np.float32)
    return epis


def ref_normalize(epis, eps=1e-6):
    """Statistics over every step, gathered one step at a time, and each step normalised."""
    obs = np.array([ob for epi in epis for ob in epi["obs"]], dtype=np.float64)
    acs = np.array([ac for epi in epis for ac in epi["acs"]], dtype=np.float64)
    stats = dict(
        mean_obs=obs.mean(0, keepdims=True),
        std_obs=obs.std(0, keepdims=True) + eps,
        mean_acs=acs.mean(0, keepdims=True),
        std_acs=acs.std(0, keepdims=True) + eps,
    )
    out = []
    for epi in epis:
        new = {}
        for key, kind in (("obs", "obs"), ("next_obs", "obs"), ("acs", "acs")):
            mean, std = stats[f"mean_{kind}"][0], stats[f"std_{kind}"][0]
            new[key] = np.array([(x - mean) / std for x in epi[key]])
        out.append(new)
    return out, stats


def as_epis(data):
    return data.current_epis if isinstance(data, Traj) else data


def make_traj(epis):
    traj = Traj()
    traj.add_epis(epis)
    return traj


@pytest.mark.parametrize("as_traj", [False, True])
def test_matches_numpy_over_all_steps(rng, as_traj):
    epis = scaled_epis(rng)
    expected, ref_stats = ref_normalize(epis)
    data = make_traj(epis) if as_traj else epis
    new, *stats = ef.normalize_obs_and_acs(data)
    assert type(new) is type(data)
    for name, got in zip(STATS, stats):
        assert got.dtype == np.float32 and got.shape == ref_stats[name].shape, name
        np.testing.assert_allclose(got, ref_stats[name], rtol=1e-6, err_msg=name)
    got_epis = as_epis(new)
    assert len(got_epis) == len(epis)
    for got, exp, epi in zip(got_epis, expected, epis):
        for key in ("obs", "next_obs", "acs"):
            assert got[key].dtype == np.float32 and got[key].shape == epi[key].shape
            np.testing.assert_allclose(got[key], exp[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # normalised: mean 0 and standard deviation 1 over all steps
    all_obs = np.concatenate([epi["obs"] for epi in got_epis])
    np.testing.assert_allclose(all_obs.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(all_obs.std(0), 1.0, rtol=1e-4)
    # the original's call without the statistics
    only = ef.normalize_obs_and_acs(data, return_statistic=False)
    assert type(only) is type(data)
    np.testing.assert_array_equal(as_epis(only)[0]["acs"], got_epis[0]["acs"])


def test_registers_the_normalised_columns(rng):
    epis = scaled_epis(rng)
    traj, mean_obs, std_obs, mean_acs, std_acs = ef.normalize_obs_and_acs(make_traj(epis))
    traj.register_epis()
    obs = np.concatenate([epi["obs"] for epi in epis])
    np.testing.assert_allclose(
        traj.data_map["obs"].numpy(), (obs - mean_obs) / std_obs, rtol=1e-5, atol=1e-5
    )


def test_given_statistics_are_used_as_given(rng):
    epis = scaled_epis(rng)
    mean_obs = np.array([1.0, 2.0, 3.0])  # (ob_dim,)
    std_obs = torch.tensor([[0.5, 4.0, 0.25]])  # (1, ob_dim), torch
    mean_acs = 2.0  # a scalar
    new, *stats = ef.normalize_obs_and_acs(epis, mean_obs, std_obs, mean_acs, eps=0.5)
    # std_acs was not given: computed, with eps; the given ones get no eps
    acs = np.concatenate([epi["acs"] for epi in epis]).astype(np.float64)
    expected_stats = [
        mean_obs[None],
        std_obs.numpy(),
        np.full((1, 2), 2.0),
        acs.std(0, keepdims=True) + 0.5,
    ]
    for name, got, exp in zip(STATS, stats, expected_stats):
        assert got.shape == exp.shape, name
        np.testing.assert_allclose(got, exp, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        new[0]["next_obs"], (epis[0]["next_obs"] - mean_obs) / std_obs.numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(
        new[0]["acs"], (epis[0]["acs"] - 2.0) / stats[3], rtol=1e-6, atol=1e-6
    )


def test_returned_statistics_reproduce_the_transform(rng):
    epis = scaled_epis(rng)
    new, *stats = ef.normalize_obs_and_acs(epis)
    again, *same = ef.normalize_obs_and_acs(epis, *stats)
    for a, b in zip(stats, same):
        np.testing.assert_array_equal(a, b)
    for x, y in zip(new, again):
        for key in ("obs", "next_obs", "acs"):
            np.testing.assert_array_equal(x[key], y[key])


def test_constant_dimension_gets_eps(rng):
    epis = scaled_epis(rng)
    for epi in epis:
        epi["obs"][:, 1] = 5.0
        epi["next_obs"][:, 1] = 5.0
    new, mean_obs, std_obs, _, _ = ef.normalize_obs_and_acs(epis, eps=1e-3)
    assert mean_obs[0, 1] == 5.0
    np.testing.assert_allclose(std_obs[0, 1], 1e-3)
    for epi in new:
        assert np.all(np.isfinite(epi["obs"])) and np.all(epi["obs"][:, 1] == 0.0)
        assert np.all(epi["next_obs"][:, 1] == 0.0)
    with pytest.raises(ValueError, match=r"std_obs: dimensions \[1\] of 'obs' are constant"):
        ef.normalize_obs_and_acs(epis, eps=0.0)
    # eps = 0 is fine when no dimension is constant: the plain population std
    _, _, std_obs, _, _ = ef.normalize_obs_and_acs(scaled_epis(rng), eps=0.0)
    assert np.all(std_obs > 0)


@pytest.mark.parametrize("registered", [False, True])
def test_a_non_finite_step_is_named_not_spread_over_its_dimension(rng, registered):
    """One NaN (or inf) observation made its dimension's statistics NaN, and that
    dimension NaN at every normalised step, without a word."""
    for bad, key in ((np.nan, "obs"), (np.inf, "acs")):
        epis = scaled_epis(rng)
        epis[2][key][3, 1] = bad
        data = make_traj(epis)
        if registered:
            data.register_epis()
        name = f"mean_{key}"
        with pytest.raises(ValueError, match=rf"{name}: dimensions \[1\] of '{key}' hold NaN"):
            (tf if registered else ef).normalize_obs_and_acs(data)


@pytest.mark.parametrize("as_traj", [False, True])
def test_input_untouched_and_other_arrays_shared(rng, as_traj):
    epis = scaled_epis(rng)
    before = copy.deepcopy(epis)
    data = make_traj(epis) if as_traj else epis
    pending_before = {k: v.copy() for k, v in data.pending.columns.items()} if as_traj else None
    new, *_ = ef.normalize_obs_and_acs(data)
    for epi, old in zip(epis, before):
        for key in ("obs", "next_obs", "acs", "rews"):
            np.testing.assert_array_equal(epi[key], old[key])
    if as_traj:
        for key, value in pending_before.items():
            np.testing.assert_array_equal(data.pending.columns[key], value)
        assert new.pending.columns["rews"] is data.pending.columns["rews"]
        assert new.pending.columns["mean"] is data.pending.columns["mean"]  # an a_is column
        assert new.pending.columns["obs"] is not data.pending.columns["obs"]
    else:
        assert new[0]["rews"] is epis[0]["rews"] and new[0]["a_is"] is epis[0]["a_is"]
        assert new[0]["obs"] is not epis[0]["obs"] and new[0] is not epis[0]


def test_bad_inputs_are_named(rng):
    epis = scaled_epis(rng)
    with pytest.raises(ValueError, match=r"mean_obs: expected a scalar or shape \(1, 3\)"):
        ef.normalize_obs_and_acs(epis, mean_obs=np.zeros(2))
    with pytest.raises(ValueError, match=r"std_acs: expected a scalar or shape \(1, 2\)"):
        ef.normalize_obs_and_acs(epis, std_acs=np.ones((2, 2)))
    with pytest.raises(ValueError, match="std_obs: expected positive"):
        ef.normalize_obs_and_acs(epis, std_obs=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean_acs: expected finite"):
        ef.normalize_obs_and_acs(epis, mean_acs=np.nan)
    with pytest.raises(ValueError, match="mean_obs: expected a number or an array"):
        ef.normalize_obs_and_acs(epis, mean_obs="zero")
    with pytest.raises(ValueError, match="eps"):
        ef.normalize_obs_and_acs(epis, eps=-1.0)
    with pytest.raises(ValueError, match="at least one episode"):
        ef.normalize_obs_and_acs([])
    with pytest.raises(ValueError, match="normalize_obs_and_acs: the Traj has no pending"):
        ef.normalize_obs_and_acs(Traj())
    with pytest.raises(TypeError, match="normalize_obs_and_acs: data: expected a Traj"):
        ef.normalize_obs_and_acs(epis[0])
    no_next = [{k: v for k, v in epi.items() if k != "next_obs"} for epi in epis]
    with pytest.raises(KeyError, match="ef.add_next_obs"):
        ef.normalize_obs_and_acs(no_next)


# ------------------------------------------------------------------ registered Traj
def registered(epis):
    traj = make_traj(epis)
    traj.register_epis()
    return traj


def test_traj_functional_matches_epi_functional(rng):
    epis = scaled_epis(rng)
    traj = registered(epis)
    new, *stats = tf.normalize_obs_and_acs(traj)
    expected, *ef_stats = ef.normalize_obs_and_acs(make_traj(epis))
    expected.register_epis()
    for name, got, exp in zip(STATS, stats, ef_stats):
        assert torch.is_tensor(got) and got.dtype == torch.float32 and got.shape == exp.shape
        np.testing.assert_allclose(got.numpy(), exp, rtol=1e-6, err_msg=name)
    for key in ("obs", "next_obs", "acs"):
        np.testing.assert_allclose(
            new.data_map[key].numpy(), expected.data_map[key].numpy(), rtol=1e-6, atol=1e-6
        )
    assert new.num_epi == traj.num_epi
    np.testing.assert_array_equal(new.epis_index, traj.epis_index)
    # given statistics (the tensors returned) give the same columns again
    again, *_ = tf.normalize_obs_and_acs(traj, *stats)
    torch.testing.assert_close(again.data_map["obs"], new.data_map["obs"], rtol=0, atol=0)
    assert tf.normalize_obs_and_acs(traj, return_statistic=False).num_step == traj.num_step


@pytest.mark.parametrize("registered_traj", [False, True])
def test_nstep_next_obs_is_normalised_with_the_obs_statistics(rng, registered_traj):
    """n-step targets bootstrap from nstep_next_obs: it must live in the obs' scale too."""
    epis = ef.compute_nstep(scaled_epis(rng), 0.9, 3)
    raw = np.concatenate([e["nstep_next_obs"] for e in epis])
    if registered_traj:
        new, mean_obs, std_obs, *_ = tf.normalize_obs_and_acs(registered(epis))
        got = new.data_map["nstep_next_obs"].numpy()
        mean_obs, std_obs = mean_obs.numpy(), std_obs.numpy()
    else:
        new, mean_obs, std_obs, *_ = ef.normalize_obs_and_acs(epis)
        got = np.concatenate([e["nstep_next_obs"] for e in new])
    np.testing.assert_allclose(got, (raw - mean_obs) / std_obs, rtol=1e-5, atol=1e-5)
    assert got.dtype == raw.dtype


def test_traj_functional_shares_only_what_it_does_not_change(rng):
    traj = Traj()
    for _ in range(2):  # two appends: traj now writes into buffers of its own
        traj.add_traj(registered(scaled_epis(rng, 3)))
    before = {k: v.clone() for k, v in traj.data_map.items()}
    new, *_ = tf.normalize_obs_and_acs(traj)
    for key, value in before.items():
        torch.testing.assert_close(traj.data_map[key], value, rtol=0, atol=0)
    assert new.data_map["rews"] is traj.data_map["rews"]
    assert new.data_map["obs"] is not traj.data_map["obs"]
    # appending to either never writes the rows the other holds
    shared_rews = new.data_map["rews"].clone()
    traj.add_traj(registered(scaled_epis(rng, 2)))
    torch.testing.assert_close(new.data_map["rews"], shared_rews, rtol=0, atol=0)
    new.add_traj(registered(scaled_epis(rng, 2)))
    torch.testing.assert_close(traj.data_map["rews"][: len(shared_rews)], shared_rews)
    torch.testing.assert_close(
        traj.data_map["obs"][: len(before["obs"])], before["obs"], rtol=0, atol=0
    )


def test_traj_functional_bad_inputs(rng):
    epis = scaled_epis(rng)
    with pytest.raises(TypeError, match="traj: expected a Traj"):
        tf.normalize_obs_and_acs(epis)
    with pytest.raises(ValueError, match="no registered steps"):
        tf.normalize_obs_and_acs(make_traj(epis))
    traj = registered([{k: v for k, v in epi.items() if k != "next_obs"} for epi in epis])
    with pytest.raises(KeyError, match="next_obs"):
        tf.normalize_obs_and_acs(traj)
    with pytest.raises(ValueError, match=r"std_obs: expected a scalar or shape \(1, 3\)"):
        tf.normalize_obs_and_acs(registered(epis), std_obs=torch.ones(4))


# ------------------------------------------------------------- the original's MPC flow
def pendulum_rew(next_obs, acs):
    theta = torch.atan2(next_obs[:, 1], next_obs[:, 0])
    return -(theta**2 + 0.1 * next_obs[:, 2].clamp(-8, 8) ** 2 + 0.001 * acs[:, 0] ** 2)


def flat(epis, key):
    return torch.as_tensor(np.concatenate([epi[key] for epi in epis]), dtype=torch.float32)


def test_statistics_drive_mpc_pol_with_a_bare_net():
    """run_mpc.py of the original: normalise random episodes, train a bare ModelNet on them,
    give MPCPol the net and the statistics; it then predicts in real units and acts."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    pol = RandomPol(ob, ac)
    with EpiSampler(env, pol, seed=0, num_envs=4) as sampler:
        epis = sampler.sample(pol, max_epis=10)  # 200 steps each
    train, test = epis[:8], epis[8:]
    traj = make_traj(train)
    traj, mean_obs, std_obs, mean_acs, std_acs = ef.normalize_obs_and_acs(traj)
    traj.register_epis()

    # the original trains the bare net on the normalised change of the observation
    net = ModelNet(ob, ac, 32, 32)
    optim = torch.optim.Adam(net.parameters(), 3e-3)
    for batch in traj.random_batch(256, epoch=400):
        loss = ((net(batch["obs"], batch["acs"]) - (batch["next_obs"] - batch["obs"])) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    mpc_pol = MPCPol(ob, ac, net, pendulum_rew, 50, 5, mean_obs, std_obs, mean_acs, std_acs)
    obs, acs, next_obs = (flat(test, k) for k in ("obs", "acs", "next_obs"))
    with torch.no_grad():
        pred = mpc_pol.net.predict_next_obs(obs, acs)
        # the same prediction made in normalised units and mapped back by hand
        test_n, *_ = ef.normalize_obs_and_acs(test, mean_obs, std_obs, mean_acs, std_acs)
        obs_n, acs_n = flat(test_n, "obs"), flat(test_n, "acs")
        by_hand = (obs_n + net(obs_n, acs_n)) * torch.as_tensor(std_obs) + torch.as_tensor(mean_obs)
    torch.testing.assert_close(pred, by_hand, rtol=1e-5, atol=1e-5)
    # on held-out episodes the model beats "nothing changes" by far
    model_mse = float(((pred - next_obs) ** 2).mean())
    still_mse = float(((obs - next_obs) ** 2).mean())
    assert model_mse < 0.1 * still_mse, (model_mse, still_mse)

    # registered-Traj statistics (torch tensors) are accepted the same way
    _, *tf_stats = tf.normalize_obs_and_acs(registered(train))
    tf_pol = MPCPol(ob, ac, net, pendulum_rew, 50, 5, *tf_stats)
    torch.testing.assert_close(tf_pol.net._predict(obs, acs), pred, rtol=1e-4, atol=1e-4)

    with EpiSampler(env, mpc_pol, seed=1, num_envs=1) as sampler:
        (epi,) = sampler.sample(mpc_pol, max_epis=1)
    assert len(epi["acs"]) == 200 and np.all(np.abs(epi["acs"]) <= 2.0)
