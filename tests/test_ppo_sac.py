"""PPO and SAC improving one policy from one sampler (example/run_ppo_sac.py's loop)."""

import copy

import gymnasium as gym
import numpy as np
import torch

from machina import loss_functional as lf
from machina.algos import ppo_clip, sac
from machina.nets import PolNet, QNet, VNet
from machina.pols import TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc

#: the mixed loop must beat its own initial policy's deterministic return by this much
MARGIN = 600.0


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _moved(before, module):
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


def _ppo_loss(pol, traj):
    """PPO's clipped-surrogate loss of ``pol`` on every step of ``traj``."""
    with torch.no_grad():
        return float(lf.pg_clip(pol, dict(traj.data_map), 0.2))


def _eval(sampler, pol):
    epis = sampler.sample(pol, max_epis=10, deterministic=True)
    return float(np.mean([epi["rews"].sum() for epi in epis]))


def test_ppo_and_sac_both_improve_one_pendulum_policy():
    """Every iteration PPO and then SAC each step the one policy; the return improves."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac))
    vf = DeterministicSVfunc(ob, VNet(ob))
    optim_ppo_pol = torch.optim.Adam(pol.parameters(), 3e-4)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    optim_sac_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_qfs = [torch.optim.Adam(qf.parameters(), 1e-3) for qf in qfs]
    optim_alpha = torch.optim.Adam([log_alpha], 1e-3)
    off_traj = Traj(max_steps=100_000)

    with EpiSampler(env, pol, num_envs=2, seed=0) as sampler:
        initial = _eval(sampler, pol)
        threshold = initial + MARGIN
        steps, eval_return, next_eval = 0, -np.inf, 1600
        while steps < 8000:
            epis = sampler.sample(pol, max_steps=400)
            traj = Traj()
            traj.add_epis(epis)
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, 0.99)
            traj = ef.compute_advs(traj, 0.99, 0.95)
            traj = ef.centerize_advs(traj)
            traj = ef.compute_h_masks(traj)
            traj.register_epis()

            before = _snapshot(pol)
            surrogate_before = _ppo_loss(pol, traj)
            ppo = ppo_clip.train(
                traj=traj,
                pol=pol,
                vf=vf,
                optim_pol=optim_ppo_pol,
                optim_vf=optim_vf,
                epoch=10,
                batch_size=200,
                clip_param=0.2,
                ent_beta=0.0,
                log_enable=False,
            )
            assert _moved(before, pol), "PPO did not update the policy"
            # PPO's step improves its own objective on the batch it learned from (the return
            # threshold below alone could be met by SAC)
            assert _ppo_loss(pol, traj) < surrogate_before, "PPO did not lower its loss"
            assert np.all(np.isfinite(ppo["PolLoss"]))

            # as the example: only the transitions SAC reads join the replay memory
            new_traj = Traj()
            new_traj.add_epis([{k: epi[k] for k in sac.OFF_POLICY_KEYS} for epi in epis])
            new_traj.register_epis()
            off_traj.add_traj(new_traj)
            before = _snapshot(pol)
            result = sac.train(
                off_traj,
                pol,
                qfs,
                targ_qfs,
                log_alpha,
                optim_sac_pol,
                optim_qfs,
                optim_alpha,
                epoch=traj.num_step,
                batch_size=min(256, off_traj.num_step),
                tau=0.005,
                gamma=0.99,
                log_enable=False,
            )
            assert _moved(before, pol), "SAC did not update the policy"
            assert len(result["PolLoss"]) == traj.num_step
            steps += traj.num_step
            if steps >= next_eval:
                next_eval += 800
                eval_return = _eval(sampler, pol)
                if eval_return >= threshold:
                    break
    # the replay memory holds every episode PPO learned from, without its on-policy columns
    assert off_traj.num_step == steps
    assert set(off_traj.data_map) == set(sac.OFF_POLICY_KEYS)
    print(f"PPO + SAC Pendulum-v1: {initial:.1f} -> {eval_return:.1f} after {steps} steps")
    assert eval_return >= threshold
