"""On-policy teacher distillation: the loss is the KL it claims; a student matches its teacher."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import mean_return
from torch.distributions import Categorical, kl_divergence
from torch.testing import assert_close

from machina.algos import on_pol_teacher_distill, ppo_clip
from machina.loss_functional.distill import shannon_cross_entropy
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf


@pytest.fixture(scope="module")
def teacher():
    """A PPO teacher on CartPole (30k steps, ~20 s) and its deterministic return."""
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    pol = make_pol(env.observation_space, env.action_space, h_size=64)
    vf = make_vf(env.observation_space, h_size=64)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    with EpiSampler(env, pol, seed=0, num_envs=8) as sampler:
        step = 0
        while step < 30_000:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=1024))
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, 0.99)
            traj = ef.compute_advs(traj, 0.99, 0.95)
            traj = ef.centerize_advs(traj)
            traj.register_epis()
            ppo_clip.train(traj, pol, vf, optim_pol, optim_vf, 10, 256, log_enable=False)
            step += traj.num_step
        ret = mean_return(sampler.sample(pol, max_epis=8, deterministic=True))
    return pol, ret


def _cartpole_batch(n=64):
    env = gym.make("CartPole-v1")
    obs = np.stack([env.observation_space.sample() for _ in range(n)])
    return env, dict(obs=torch.as_tensor(obs))


def test_loss_is_the_mean_kl_from_teacher_to_student():
    torch.manual_seed(0)
    env, batch = _cartpole_batch()
    teacher = make_pol(env.observation_space, env.action_space, h_size=8)
    student = make_pol(env.observation_space, env.action_space, h_size=8)
    with torch.no_grad():  # make the two policies clearly different
        for p in teacher.parameters():
            p.mul_(20.0)
    loss = shannon_cross_entropy(student, teacher, batch)
    t_pi = teacher.pd_params(batch["obs"])["pi"]
    s_pi = student.pd_params(batch["obs"])["pi"]
    expected = kl_divergence(Categorical(probs=t_pi), Categorical(probs=s_pi)).mean()
    assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert_close(shannon_cross_entropy(teacher, teacher, batch), torch.tensor(0.0))


def test_loss_rejects_a_teacher_of_another_kind():
    env, batch = _cartpole_batch()
    student = make_pol(env.observation_space, env.action_space, h_size=8)
    pend = gym.make("Pendulum-v1")
    gaussian = make_pol(pend.observation_space, pend.action_space, h_size=8)
    with pytest.raises(ValueError, match="teacher_pol: needs the student's kind"):
        shannon_cross_entropy(student, gaussian, batch)


def test_recurrent_student_trains_on_sequences():
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    teacher = make_pol(env.observation_space, env.action_space, h_size=8)
    student = make_pol(env.observation_space, env.action_space, rnn=True, h_size=8)
    with EpiSampler(env, student, seed=0, num_envs=2) as sampler:
        epis = sampler.sample(student, max_steps=200)
    # No ef.compute_h_masks: the sequence batches carry their own h_masks.
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    assert "h_masks" not in traj.data_map
    optim = torch.optim.Adam(student.parameters(), 1e-2)
    result = on_pol_teacher_distill.train(traj, student, teacher, optim, 20, 4, log_enable=False)
    losses = result["S_Pol_loss"]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_student_reaches_80_percent_of_its_teacher(teacher):
    """A 16-unit student, from its own episodes and the teacher's KL alone (no reward)."""
    teacher_pol, teacher_return = teacher
    assert teacher_return >= 300, teacher_return  # a teacher worth distilling
    torch.manual_seed(1)
    env = gym.make("CartPole-v1")
    student = make_pol(env.observation_space, env.action_space, h_size=16)
    optim = torch.optim.Adam(student.parameters(), 3e-3)
    with EpiSampler(env, student, seed=1, num_envs=8) as sampler:
        before = mean_return(sampler.sample(student, max_epis=8, deterministic=True))
        for _ in range(6):
            traj = Traj()
            traj.add_epis(sampler.sample(student, max_steps=1000))
            traj.register_epis()
            on_pol_teacher_distill.train(
                traj, student, teacher_pol, optim, 5, 256, log_enable=False
            )
        after = mean_return(sampler.sample(student, max_epis=8, deterministic=True))
    assert before < 0.5 * teacher_return, (before, teacher_return)
    assert after >= 0.8 * teacher_return, (after, teacher_return)
