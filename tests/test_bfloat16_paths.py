"""bfloat16 modules and tensors (numpy lacks the dtype) through the estimators, the priority
update, given normalisation statistics and 0.x's one_epi: each converted to float32 where it
leaves torch (the estimators, the statistics and one_epi raised ``TypeError: Got unsupported
ScalarType BFloat16`` before)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.envs import GymEnv
from machina.nets import PolNet
from machina.nets.discrim import DiscrimNet
from machina.pols import GaussianPol
from machina.samplers import epi_sampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj import traj_functional as tf
from machina.vfuncs import DeterministicSAVfunc, make_vf

OB = gym.spaces.Box(-1, 1, (3,), np.float32)
AC = gym.spaces.Box(-1, 1, (2,), np.float32)


def episodes(rng, lengths=(4, 1, 7)):
    epis = []
    for length in lengths:
        terms = np.zeros(length, np.float32)
        terms[-1] = 1.0
        epis.append(
            dict(
                obs=rng.normal(size=(length, 3)).astype(np.float32),
                next_obs=rng.normal(size=(length, 3)).astype(np.float32),
                acs=rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
                rews=rng.normal(size=length).astype(np.float32),
                terms=terms,
                truncs=np.zeros(length, np.float32),
            )
        )
    return epis


def traj_of(epis):
    traj = Traj()
    traj.add_epis(epis)
    return traj


def registered(traj):
    traj.register_epis()
    return traj


@pytest.mark.parametrize("rnn", [False, True])
def test_compute_vs_with_a_bfloat16_vf(rnn):
    rng = np.random.default_rng(0)
    epis = episodes(rng)
    torch.manual_seed(0)
    vf = make_vf(OB, rnn=rnn).to(torch.bfloat16)
    vs = registered(ef.compute_vs(traj_of(epis), vf)).data_map["vs"]
    assert vs.dtype == torch.float32
    if not rnn:  # the module's own bfloat16 outputs (to bfloat16's rounding: the batch
        # differs from compute_vs's chunks, so may the CPU kernel)
        obs = torch.as_tensor(np.concatenate([e["obs"] for e in epis]))
        with torch.no_grad():
            expected = vf(obs.to(torch.bfloat16))[0].reshape(-1).float()
        atol = 2 * 2.0**-8 * (float(expected.abs().max()) + 1.0)
        torch.testing.assert_close(vs.reshape(-1), expected, rtol=0, atol=atol)
    # against the same weights in float32: bfloat16 keeps 8 bits of mantissa
    vs32 = registered(ef.compute_vs(traj_of(epis), vf.float())).data_map["vs"]
    scale = float(vs32.abs().max()) + 1.0
    torch.testing.assert_close(vs, vs32, rtol=0, atol=8 * 2.0**-8 * scale)


def test_compute_pseudo_rews_with_a_bfloat16_discriminator():
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    discrim = DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC, 8, 8)).to(torch.bfloat16)
    rews = registered(ef.compute_pseudo_rews(traj_of(episodes(rng)), discrim)).data_map["rews"]
    assert rews.dtype == torch.float32 and torch.isfinite(rews).all()


def test_update_pris_with_bfloat16_td_errors_on_a_float32_column():
    rng = np.random.default_rng(2)
    epis = episodes(rng)
    for e in epis:
        e["pris"] = np.ones(len(e["rews"]), np.float32)
    traj = registered(traj_of(epis))
    idx = torch.tensor([0, 3, 5])
    td = torch.tensor([0.5, -2.0, 4.0], dtype=torch.bfloat16)
    tf.update_pris(traj, td, idx, alpha=1.0, epsilon=1e-6)
    assert traj.data_map["pris"].dtype == torch.float32
    torch.testing.assert_close(traj.data_map["pris"][idx], torch.tensor([0.5, 2.0, 4.0]) + 1e-6)


def test_normalize_obs_and_acs_takes_bfloat16_statistics():
    rng = np.random.default_rng(3)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.bfloat16)
    out = ef.normalize_obs_and_acs(episodes(rng), mean_obs=mean, std_obs=2.0)
    np.testing.assert_allclose(out[1], mean.float().numpy()[None])


def test_0x_one_epi_with_a_bfloat16_policy():
    env = GymEnv("Pendulum-v1")
    env.reset(seed=0)
    torch.manual_seed(0)
    space_ob, space_ac = env.observation_space, env.action_space
    pol = GaussianPol(space_ob, space_ac, PolNet(space_ob, space_ac)).to(torch.bfloat16)
    length, epi = epi_sampler.one_epi(env, pol, True)
    assert length == 200 and epi["acs"].dtype == np.float32
    np.testing.assert_array_equal(epi["acs"], epi["a_is"]["mean"])
