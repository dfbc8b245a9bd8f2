"""Episodes to and from Minari datasets and pandas DataFrames: round trips, offline."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.datasets import (
    env_to_policy_acs,
    from_dataframe,
    from_minari,
    policy_to_env_acs,
    to_dataframe,
    to_minari,
)
from machina.nets.mlp import PolNet
from machina.pols import CategoricalPol, GaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj

minari = pytest.importorskip("minari")
pytest.importorskip("h5py")
pd = pytest.importorskip("pandas")


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """Minari reads and writes under $MINARI_DATASETS_PATH: a fresh local root per test."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def pendulum_epis():
    """Real Pendulum episodes of 12 steps (truncated) from a wide Gaussian policy, so some
    policy-space actions fall outside [-1, 1] and get clipped by the scaling to [-2, 2]."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1", max_episode_steps=12)
    pol = GaussianPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    with torch.no_grad():
        pol.net.head.log_std_param.fill_(0.5)
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=3)
    assert any(np.abs(epi["acs"]).max() > 1.0 for epi in epis)
    return env, pol, epis


def cartpole_epis():
    torch.manual_seed(0)
    env = gym.make("CartPole-v1", max_episode_steps=30)
    pol = CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    with EpiSampler(env, pol, seed=1) as sampler:
        epis = sampler.sample(pol, max_epis=4)
    assert any(epi["terms"][-1] for epi in epis)
    return env, pol, epis


def assert_epis_equal(got, want, keys=None):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for key in keys or [k for k in w if k not in ("a_is", "e_is")]:
            np.testing.assert_array_equal(g[key], w[key], err_msg=key)
            assert np.asarray(g[key]).dtype == np.asarray(w[key]).dtype, key
        for group in ("a_is", "e_is"):
            if keys is None and w.get(group):
                assert sorted(g[group]) == sorted(w[group])
                for sub in w[group]:
                    np.testing.assert_array_equal(g[group][sub], w[group][sub])


def test_minari_layout_is_minaris(minari_root):
    """What another Minari user reads: T + 1 observations, the actions the environment
    received (scaled to the Box bounds), terminations and truncations."""
    env, pol, epis = pendulum_epis()
    to_minari(epis, "machina/pendulum-test-v0", pol=pol, env="Pendulum-v1", algorithm_name="x")
    assert (minari_root / "machina" / "pendulum-test-v0").is_dir()
    dataset = minari.load_dataset("machina/pendulum-test-v0")
    assert dataset.total_episodes == 3
    assert dataset.total_steps == sum(len(epi["rews"]) for epi in epis)
    for data, epi in zip(dataset.iterate_episodes(), epis, strict=True):
        T = len(epi["rews"])
        assert data.observations.shape == (T + 1, 3)
        np.testing.assert_array_equal(data.observations[:T], epi["obs"])
        np.testing.assert_array_equal(data.observations[T], epi["next_obs"][-1])
        np.testing.assert_array_equal(data.actions, pol.convert_ac_for_real(epi["acs"]))
        assert np.all(np.abs(data.actions) <= 2.0)
        np.testing.assert_array_equal(data.terminations, epi["terms"])
        np.testing.assert_array_equal(data.truncations, epi["truncs"])
        assert data.truncations[-1] and not data.terminations.any()


def test_minari_round_trip_is_exact(minari_root):
    env, pol, epis = pendulum_epis()
    to_minari(epis, "pendulum-round-v0", pol=pol)
    back = from_minari("pendulum-round-v0")
    assert_epis_equal(back, epis, keys=["obs", "next_obs", "acs", "terms", "truncs", "dones"])
    for got, want in zip(back, epis, strict=True):
        np.testing.assert_array_equal(got["rews"], want["rews"])  # Minari may widen the dtype
        assert sorted(got["a_is"]) == sorted(want["a_is"])
        for key in want["a_is"]:
            np.testing.assert_array_equal(got["a_is"][key], want["a_is"][key])
    # a Traj of the episodes reads back the same
    traj = Traj()
    traj.add_epis(back)
    traj.register_epis()
    assert traj.num_step == sum(len(epi["rews"]) for epi in epis)


def test_minari_actions_converted_back_through_the_bounds(minari_root):
    """Without machina's stored acs, the environment's actions map back into the policy's
    [-1, 1]: the policy-space action clipped to the bounds, up to float32 rounding."""
    env, pol, epis = pendulum_epis()
    to_minari(epis, "pendulum-conv-v0", pol=pol)
    back = from_minari("pendulum-conv-v0", pol=pol, use_stored_acs=False)
    for got, want in zip(back, epis, strict=True):
        assert got["acs"].dtype == np.float32
        # scale by 2 = (high - low) / 2 and back: a few ulps of values up to 1
        np.testing.assert_allclose(got["acs"], np.clip(want["acs"], -1, 1), rtol=0, atol=1e-6)
        llh = pol.pd.llh(torch.as_tensor(got["acs"]), pol.pd_params(got["obs"]))
        assert torch.isfinite(llh).all()


def test_minari_discrete_and_env_infos(minari_root):
    """Terminated CartPole episodes, and env infos stored Minari's way: row 0 is the reset
    info (padded), row t + 1 the info of step t."""
    env, pol, epis = cartpole_epis()
    rng = np.random.default_rng(0)
    for epi in epis:
        epi["e_is"] = dict(x_pos=rng.normal(size=len(epi["rews"])))
    to_minari(epis, "cartpole-v0", env=env)  # Discrete from 0: acs are the env's actions
    data = next(minari.load_dataset("cartpole-v0").iterate_episodes([0]))
    assert np.isnan(data.infos["x_pos"][0])
    np.testing.assert_array_equal(data.infos["x_pos"][1:], epis[0]["e_is"]["x_pos"])
    back = from_minari("cartpole-v0", pol=pol)
    assert_epis_equal(back, epis, keys=["obs", "next_obs", "acs", "terms", "truncs", "dones"])
    for got, want in zip(back, epis, strict=True):
        np.testing.assert_array_equal(got["e_is"]["x_pos"], want["e_is"]["x_pos"])


def test_action_conversions_invert_each_other():
    ob = gym.spaces.Box(-1, 1, (2,), np.float32)
    space = gym.spaces.Discrete(3, start=5)
    pol = CategoricalPol(ob, space, PolNet(ob, space, 4, 4))
    acs = np.array([0, 2, 1])
    real = policy_to_env_acs(pol, acs)
    np.testing.assert_array_equal(real, [5, 7, 6])
    np.testing.assert_array_equal(env_to_policy_acs(pol, real), acs)


def test_minari_bad_input_names_the_argument(minari_root):
    env, pol, epis = pendulum_epis()
    broken = dict(epis[0], next_obs=epis[0]["next_obs"][::-1].copy())
    with pytest.raises(ValueError, match=r"epis\[0\]: next_obs"):
        to_minari([broken], "broken-v0", pol=pol)
    with pytest.raises(ValueError, match="observation_space, action_space"):
        to_minari(epis, "nospace-v0")
    with pytest.raises(ValueError, match="epis"):
        to_minari([], "empty-v0", pol=pol)


def test_dataframe_round_trip():
    rng = np.random.default_rng(0)
    epis = make_random_epis(rng, n_epi=4, max_len=6)
    for epi in epis:  # a multi-dimensional key and an integer one
        epi["images"] = rng.integers(0, 255, size=(len(epi["rews"]), 2, 3), dtype=np.uint8)
    df = to_dataframe(epis)
    assert len(df) == sum(len(epi["rews"]) for epi in epis)
    assert {"epi", "t", "rews", "obs[0]", "images[1,2]", "a_is/mean[1]", "e_is/x_pos"} <= set(
        df.columns
    )
    assert df["images[1,2]"].dtype == np.uint8
    assert_epis_equal(from_dataframe(df), epis)
    # rows in any order come back grouped by episode and ordered by step
    assert_epis_equal(from_dataframe(df.sample(frac=1.0, random_state=0)), epis)


def test_to_dataframe_refuses_keys_named_as_its_index_columns():
    """A key 't' or 'epi' overwrote the step or episode column (from_dataframe then blamed
    the frame's ids)."""
    epis = make_random_epis(np.random.default_rng(0), n_epi=2, max_len=4)
    for epi in epis:
        epi["t"] = np.zeros(len(epi["rews"]), np.float32)
    with pytest.raises(ValueError, match=r"epis: keys \['t'\] are the DataFrame's episode"):
        to_dataframe(epis)


def test_dataframe_refuses_repeated_ids_missing_rows_and_columns():
    epis = make_random_epis(np.random.default_rng(0), n_epi=2, max_len=6)
    assert min(len(epi["rews"]) for epi in epis) >= 3
    df = to_dataframe(epis)
    # two frames each numbered from 0 would come back as interleaved double-length episodes
    with pytest.raises(ValueError, match=r"episode 0.*repeats.*distinct 'epi' ids"):
        from_dataframe(pd.concat([df, df]))
    with pytest.raises(ValueError, match=r"episode 1.*got t = 2.*rows are missing"):
        from_dataframe(df.drop(index=df.index[(df["epi"] == 1) & (df["t"] == 1)]))
    with pytest.raises(ValueError, match=r"missing obs\[1\]"):
        from_dataframe(df.drop(columns=["obs[1]"]))
    with pytest.raises(ValueError, match=r"columns obs\[\.\.\.\] index 1 and 2 dimensions"):
        from_dataframe(df.rename(columns={"obs[1]": "obs[1,0]"}))
    renumbered = pd.concat([df, df.assign(epi=df["epi"] + 2)])
    assert_epis_equal(from_dataframe(renumbered), epis + epis)
    # a dropped last row leaves steps 0..T-2, numbered right: only the missing flag shows it
    last_of_1 = df.index[(df["epi"] == 1) & (df["t"] == df[df["epi"] == 1]["t"].max())]
    with pytest.warns(
        UserWarning, match=r"1 episode\(s\) end on a row with no end flag \(epi \[1\]"
    ):
        cut = from_dataframe(df.drop(index=last_of_1))
    assert len(cut[1]["rews"]) == len(epis[1]["rews"]) - 1
    assert from_dataframe(df.iloc[:0]) == []  # a frame filtered down to no row


def test_dataframe_of_traj_with_env_actions():
    env, pol, epis = pendulum_epis()
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    df = to_dataframe(traj, pol=pol)
    assert df["ac_real[0]"].between(-2.0, 2.0).all()
    back = from_dataframe(df)
    assert_epis_equal(back, traj.epis(), keys=["obs", "acs", "rews", "next_obs", "terms"])
    np.testing.assert_array_equal(back[0]["ac_real"], pol.convert_ac_for_real(epis[0]["acs"]))
