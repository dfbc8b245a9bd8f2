"""Worker of tests/test_distributed.py, launched by torchrun (2 ranks, gloo, 127.0.0.1).

``python -m torch.distributed.run --nproc_per_node 2 ... _distributed_worker.py SCENARIO DIR``

- ``same_data``: every rank holds the same episodes (``Traj(ddp=True)``): PPO feed-forward
  and recurrent (several epochs), DDPG, SAC (Adam and SGD), TD3, prioritised DDPG and
  R2D2-SAC, plus unit checks of the gradient all-reduce (averaged before clipping, NaN on
  one rank, a gradient present on one rank only, the Distributed* optimisers).
- ``own_data``: each rank samples its own episodes with its own seed and a different budget
  (plain ``Traj``): PPO feed-forward and recurrent, SAC.

Each rank saves what it ended with to ``DIR/<scenario>_rank<r>.pt``. The training functions
here are also imported by the test, which runs them in one process for the reference.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

from machina.algos import ddpg, diayn, diayn_sac, ppo_clip, prioritized_ddpg, r2d2_sac, sac, td3
from machina.nets import PolNet, PolNetLSTM, QNet, QNetLSTM, SkillDiscrimNet
from machina.pols import DeterministicActionNoisePol, TanhGaussianPol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.utils import batch_share, optimizer_step
from machina.utils.batch_share import BatchShare, SharedBatch
from machina.vfuncs import DeterministicSAVfunc, make_vf

EPI_LEN = 50  # every episode has this length, so each rank's share weighs the same
SEED = 1234  # torch seed before each train call (it seeds rank 0's Traj generator)
# PPO's passes over the data per train call where runs are compared: more than one, so that
# later epochs' orders are checked too (drawn while the losses draw from the global RNG).
COMPARED_EPOCHS = 3
# off-policy minibatches of an odd size: the 2 ranks' shares are 15 and 16 steps, so their
# losses must weigh by the whole minibatch's size, not their own
OFF_BATCH = 31


def make_traj(epis: list[dict], ddp: bool, *estimators) -> Traj:
    """A Traj of ``epis`` with ``estimators`` (Traj -> Traj) applied in turn, registered; the
    global seed is then set to ``SEED``, as before every compared train call."""
    traj = Traj(ddp=ddp)
    traj.add_epis(epis)
    for estimate in estimators:
        traj = estimate(traj)
    traj.register_epis()
    torch.manual_seed(SEED)
    return traj


def on_policy(vf, centre: bool = True) -> list:
    """The on-policy estimators of the compared PPO runs (values of ``vf``, GAE)."""
    return [
        lambda t: ef.compute_vs(t, vf),
        lambda t: ef.compute_rets(t, 0.99),
        lambda t: ef.compute_advs(t, 0.99, 0.95),
        *([ef.centerize_advs] if centre else []),
        ef.compute_h_masks,
    ]


def make_env() -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=EPI_LEN)


def sample_epis(seed: int, max_steps: int, rnn: bool = False, env: gym.Env | None = None) -> list:
    """Episodes of a seeded policy on ``env`` (default: Pendulum, cut at EPI_LEN)."""
    env = make_env() if env is None else env
    torch.manual_seed(seed)
    pol = make_pol(env.observation_space, env.action_space, rnn=rnn, h_size=8)
    with EpiSampler(env, pol, seed=seed) as sampler:
        return sampler.sample(pol, max_steps=max_steps)


def build_ppo(rnn: bool, seed: int = 0) -> tuple:
    env = make_env()
    torch.manual_seed(seed)
    pol = make_pol(env.observation_space, env.action_space, rnn=rnn, h_size=8)
    vf = make_vf(env.observation_space, rnn=rnn, h_size=8)
    return pol, vf


def make_optim(params, adam: bool) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum where runs are compared: an update linear in the gradient
    keeps float32 rounding differences at their size, where Adam's m / sqrt(v) turns a
    rounding-level difference of a near-zero gradient component into a full step.

    The SGD step is small enough for the training to be contractive: at lr 0.05, PPO's
    3 epochs here turn a 1-ulp perturbation of the initial weights into 6.5e-5 of the
    policy's (measured in one process); at 0.01 it stays at 1 ulp, so a comparison with
    single-process training measures the data-parallel arithmetic, not the dynamics.
    """
    params = list(params)
    return torch.optim.Adam(params, 3e-3) if adam else torch.optim.SGD(params, 0.01, 0.9)


def train_ppo(
    epis: list[dict], pol, vf, ddp: bool, rnn: bool, adam: bool = True, epoch: int = 2
) -> dict:
    """ppo_clip (clipping on) from ``pol``/``vf``; returns the new states and losses.

    The policy draws actions from the global RNG in its forward pass, each rank for its
    share of the batch only; the minibatch orders come from the Traj's own generator
    (seeded from rank 0's global RNG right after ``torch.manual_seed(SEED)``), so every
    epoch's order is the single-process one.
    """
    optim_pol = make_optim(pol.parameters(), adam)
    optim_vf = make_optim(vf.parameters(), adam)
    traj = make_traj(epis, ddp, *on_policy(vf))
    result = ppo_clip.train(
        traj=traj, pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf, epoch=epoch,
        batch_size=2 if rnn else 40, max_grad_norm=0.5, log_enable=False,
    )  # fmt: skip
    rng = torch.get_rng_state()  # rank 0's must be where one process's is: the next Traj's seed
    return dict(pol=pol.state_dict(), vf=vf.state_dict(), result=result, rng=rng)


def sample_cartpole_epis(seed: int, max_steps: int, rnn: bool) -> list[dict]:
    """CartPole episodes, most ending at a fall: shares of a sequence minibatch hold
    different numbers of real steps."""
    return sample_epis(seed, max_steps, rnn, gym.make("CartPole-v1", max_episode_steps=EPI_LEN))


def train_ppo_cartpole(epis: list[dict], ddp: bool, rnn: bool, tail_of_one: bool = False) -> dict:
    """ppo_clip with advantages standardised per minibatch, SGD, 3 epochs, minibatches of 39
    steps (shares of 19 and 20) or 2 sequences: the losses' means and the standardisation
    are the whole minibatch's whatever the shares' sizes. ``tail_of_one``: minibatches of
    all the steps (sequences) but one, so each epoch ends on a minibatch of one item, of
    which one rank gets an empty share."""
    env = gym.make("CartPole-v1", max_episode_steps=EPI_LEN)
    torch.manual_seed(0)
    pol = make_pol(env.observation_space, env.action_space, rnn=rnn, h_size=8)
    vf = make_vf(env.observation_space, rnn=rnn, h_size=8)
    traj = make_traj(epis, ddp, *on_policy(vf, centre=False))
    ppo_clip.train(
        traj=traj, pol=pol, vf=vf, optim_pol=make_optim(pol.parameters(), False),
        optim_vf=make_optim(vf.parameters(), False), epoch=3,
        batch_size=(len(epis) if rnn else traj.num_step) - 1 if tail_of_one else 2 if rnn else 39,
        max_grad_norm=0.5, log_enable=False, minibatch_norm_advs=True,
    )  # fmt: skip
    return dict(pol=pol.state_dict(), vf=vf.state_dict(), rng=torch.get_rng_state())


def build_ddpg(seed: int = 0) -> tuple:
    env = make_env()
    ob, ac = env.observation_space, env.action_space
    torch.manual_seed(seed)
    pol = DeterministicActionNoisePol(ob, ac, PolNet(ob, ac, 8, 8, deterministic=True))
    qf = DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8))
    return pol, qf


def train_ddpg(epis: list[dict], pol, qf, ddp: bool) -> dict:
    """DDPG (noise-free losses) for 8 steps on uniform random batches, SGD (see make_optim):
    an off-policy run that mode 1 makes equal to the single-process one."""
    targ_pol, targ_qf = copy.deepcopy(pol), copy.deepcopy(qf)
    traj = make_traj(epis, ddp)
    ddpg.train(
        traj, pol, qf, targ_pol, targ_qf, make_optim(pol.parameters(), False),
        make_optim(qf.parameters(), False), 8, OFF_BATCH, 0.05, 0.99, log_enable=False,
        max_grad_norm=1.0,
    )  # fmt: skip
    return dict(pol=pol.state_dict(), qf=qf.state_dict(), targ_qf=targ_qf.state_dict())


def build_sac(seed: int = 0) -> tuple:
    env = make_env()
    ob, ac = env.observation_space, env.action_space
    torch.manual_seed(seed)
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 8, 8))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8)) for _ in range(2)]
    return pol, qfs


def train_sac(epis: list[dict], pol, qfs, ddp: bool, adam: bool = True) -> dict:
    """SAC for 6 steps: its losses draw action noise for the whole minibatch on every rank
    (``machina.utils.batch_share``), so with SGD (see make_optim) mode 1 is the single-process
    run."""
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    optim_pol = make_optim(pol.parameters(), adam)
    optim_qfs = [make_optim(qf.parameters(), adam) for qf in qfs]
    optim_alpha = make_optim([log_alpha], adam)
    traj = make_traj(epis, ddp)
    result = sac.train(
        traj, pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha, 6, OFF_BATCH, 0.05,
        0.99, max_grad_norm=1.0, log_enable=False,
    )  # fmt: skip
    return dict(
        pol=pol.state_dict(),
        qfs=[qf.state_dict() for qf in qfs],
        targ_qfs=[qf.state_dict() for qf in targ_qfs],
        log_alpha=log_alpha.detach().clone(),
        result=result,
    )


def build_td3(seed: int = 0) -> tuple:
    env = make_env()
    ob, ac = env.observation_space, env.action_space
    torch.manual_seed(seed)
    pol = DeterministicActionNoisePol(ob, ac, PolNet(ob, ac, 8, 8, deterministic=True))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8)) for _ in range(2)]
    return pol, qfs


def train_td3(epis: list[dict], pol, qfs, ddp: bool) -> dict:
    """TD3 for 8 steps, SGD: its target smoothing noise is drawn for the whole minibatch."""
    targ_pol, targ_qfs = copy.deepcopy(pol), [copy.deepcopy(qf) for qf in qfs]
    traj = make_traj(epis, ddp)
    td3.train(
        traj, pol, qfs, targ_pol, targ_qfs, make_optim(pol.parameters(), False),
        [make_optim(qf.parameters(), False) for qf in qfs], 8, OFF_BATCH, 0.05, 0.99,
        log_enable=False, max_grad_norm=1.0,
    )  # fmt: skip
    return dict(pol=pol.state_dict(), qfs=[qf.state_dict() for qf in qfs])


def train_prioritized_ddpg(epis: list[dict], ddp: bool) -> dict:
    """Prioritised DDPG, 8 steps, SGD: every rank writes the whole minibatch's priorities
    (its share's TD errors gathered), so the ranks' replay and the draws stay the single
    process's."""
    pol, qf = build_ddpg()
    targ_pol, targ_qf = copy.deepcopy(pol), copy.deepcopy(qf)
    traj = make_traj(epis, ddp, lambda t: ef.set_all_pris(t, 1.0))
    prioritized_ddpg.train(
        traj, pol, targ_pol, qf, targ_qf, make_optim(pol.parameters(), False),
        make_optim(qf.parameters(), False), 8, OFF_BATCH, 0.05, 0.99, log_enable=False,
        max_grad_norm=1.0,
    )  # fmt: skip
    return dict(pol=pol.state_dict(), qf=qf.state_dict(), pris=traj.data_map["pris"].clone())


def train_r2d2_sac(epis: list[dict], ddp: bool) -> dict:
    """R2D2-SAC on prioritised windows of 8 steps, 15 per batch (shares of 7 and 8), burn-in
    3, SGD: masked means over the whole minibatch's trained steps, gathered priorities."""
    env = make_env()
    ob, ac = env.observation_space, env.action_space
    torch.manual_seed(0)
    pol = TanhGaussianPol(ob, ac, PolNetLSTM(ob, ac, 8, 8), rnn=True)
    qfs = [DeterministicSAVfunc(ob, ac, QNetLSTM(ob, ac, 8, 8), rnn=True) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    traj = make_traj(epis, ddp, lambda t: ef.compute_seq_pris(ef.set_all_pris(t, 1.0), 8))
    result = r2d2_sac.train(
        traj, pol, qfs, targ_qfs, log_alpha, make_optim(pol.parameters(), False),
        [make_optim(qf.parameters(), False) for qf in qfs], make_optim([log_alpha], False),
        6, 15, 8, 3, 0.05, 0.99, log_enable=False, max_grad_norm=1.0,
    )  # fmt: skip
    return dict(
        pol=pol.state_dict(),
        qfs=[qf.state_dict() for qf in qfs],
        log_alpha=log_alpha.detach().clone(),
        pris=traj.data_map["pris"].clone(),
        entropy=result["Entropy"],
    )


def train_diayn(epis: list[dict], ddp: bool) -> dict:
    """DIAYN's discriminator (4 steps) and SAC on its rewards (3 steps), minibatches of
    OFF_BATCH steps: the accuracies and the mean reward they report are the whole
    minibatches' (the ranks' shares together), as one process reports them."""
    num_skill, ob = 2, gym.spaces.Box(-10.0, 10.0, (5,))
    skill_epis = []
    for i, epi in enumerate(epis):  # Pendulum's observations plus a skill one-hot
        onehot = np.eye(num_skill, dtype=epi["obs"].dtype)[i % num_skill]
        skill_epis.append(
            {**epi, **{k: np.hstack([epi[k], np.tile(onehot, (len(epi[k]), 1))])
                       for k in ("obs", "next_obs")}}
        )  # fmt: skip
    torch.manual_seed(0)
    discrim = SkillDiscrimNet(gym.spaces.Box(-10.0, 10.0, (3,)), num_skill, 8, 8)
    ac = make_env().action_space
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 8, 8))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8)) for _ in range(2)]
    traj = make_traj(skill_epis, ddp)
    accs = diayn.train(
        discrim, make_optim(discrim.parameters(), False), traj, OFF_BATCH, 4, num_skill,
        log_enable=False,
    )["DiscrimAcc"]  # fmt: skip
    log_alpha = torch.zeros((), requires_grad=True)
    result = diayn_sac.train(
        traj, pol, qfs, [copy.deepcopy(qf) for qf in qfs], log_alpha,
        make_optim(pol.parameters(), False), [make_optim(qf.parameters(), False) for qf in qfs],
        make_optim([log_alpha], False), 3, OFF_BATCH, 0.05, 0.99, 1, discrim, num_skill,
        log_enable=False,
    )  # fmt: skip
    return dict(accs=accs, rew=result["DiaynRew"], entropy=result["Entropy"])


def train_trpo(epis: list[dict], rank: int) -> dict:
    """Two TRPO calls on this rank's own episodes; its natural-gradient step averages the
    gradient, the Fisher-vector products and the line search's values over ranks."""
    import machina.distributed as mdist
    from machina.algos import trpo

    pol, vf = build_ppo(False, seed=rank)
    mdist.sync_params(pol, vf)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    for _ in range(2):
        traj = make_traj(epis, False, *on_policy(vf))
        trpo.train(traj, pol, vf, optim_vf, 1, 64, log_enable=False)
    return {"pol": pol.state_dict(), "vf": vf.state_dict()}


def train_ppo_kl(epis: list[dict], rank: int) -> dict:
    """Two ppo_kl calls on this rank's own episodes, each with the coefficient the last
    returned: the KL that steers it is averaged over ranks, as the gradients are."""
    import machina.distributed as mdist
    from machina.algos import ppo_kl

    pol, vf = build_ppo(False, seed=rank)
    mdist.sync_params(pol, vf)
    optim_pol, optim_vf = make_optim(pol.parameters(), True), make_optim(vf.parameters(), True)
    kl_beta, kl_means = 1.0, []
    for _ in range(2):
        traj = make_traj(epis, False, *on_policy(vf))
        result = ppo_kl.train(
            traj, pol, vf, kl_beta, 0.01, optim_pol, optim_vf, 2, 40, log_enable=False
        )
        kl_beta = result["new_kl_beta"]
        kl_means.append(result["kl_mean"])
    return {"pol": pol.state_dict(), "kl_beta": kl_beta, "kl_means": kl_means}


def unit_checks(rank: int) -> dict:
    """Gradient all-reduce facts that a trained network would blur."""
    from machina import optims
    from machina.utils import NonFiniteError
    from machina.utils import distributed as dist_utils

    out = {}
    # Averaged before clipping: rank gradients [3,0,0] and [0,4,0] average to [1.5,2,0]
    # (norm 2.5), clipped to norm 1: [0.6,0.8,0]. Clipping first would give [0.5,0.5,0].
    rank_grads = [torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])]
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer_step(torch.optim.SGD([w], lr=1.0), (rank_grads[rank] * w).sum(), None, 1.0)
    out["clip_after_average"] = w.detach().clone()

    # The same through DistributedSGD with machina's averaging turned off: the optimiser
    # makes optimizer_step average (once, before clipping).
    dist_utils.set_grad_averaging(False)
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer_step(optims.DistributedSGD([w], lr=1.0), (rank_grads[rank] * w).sum(), None, 1.0)
    out["distributed_sgd_clip"] = w.detach().clone()
    # DistributedAdamW in a plain loop (backward, step): it averages in step().
    w = torch.nn.Parameter(torch.zeros(3))
    opt = optims.DistributedAdamW([w], lr=0.1)
    (rank_grads[rank] * w).sum().backward()
    opt.step()
    out["distributed_adamw"] = w.detach().clone()
    out["distributed_adamw_grad"] = w.grad.clone()
    dist_utils.set_grad_averaging(True)

    # A loss summed over a share of 2 or 3 of 5 items (0..4): times the number of ranks, the
    # averaged gradient is the whole sum's (10); a mean over no axis of the share is an error.
    batch = SharedBatch({}, BatchShare(2 * rank, 2 + 3 * rank, 5))
    w = torch.nn.Parameter(torch.zeros(1))
    items = torch.arange(5.0)[2 * rank : 2 + 3 * rank]
    optimizer_step(torch.optim.SGD([w], lr=1.0), batch_share.share_sum(w * items, batch))
    out["share_sum_step"] = w.detach().clone()
    try:
        batch_share.share_mean(torch.zeros(7), batch)
        out["share_mean_error"] = None
    except ValueError as e:
        out["share_mean_error"] = str(e)

    # A minibatch of one item: rank 0's share is empty. share_mean gives it a loss of 0
    # (the step is the item's); a plain mean of nothing is NaN, and the error says why.
    batch = SharedBatch({}, BatchShare(0, rank, 1))  # what Traj gives: [0, 0) and [0, 1)
    w = torch.nn.Parameter(torch.zeros(1))
    item = torch.tensor([3.0])[:rank]
    optimizer_step(torch.optim.SGD([w], lr=1.0), batch_share.share_mean(w * item, batch))
    out["empty_share_step"] = w.detach().clone()
    try:
        optimizer_step(torch.optim.SGD([w], lr=1.0), (w * item).mean(), name="mean", batch=batch)
        out["empty_share_error"] = None
    except NonFiniteError as e:
        out["empty_share_error"] = str(e)

    # make_model_distributed and a loop of the user's own (backward, step): the step on
    # unaveraged gradients warns (once); averaged after backward, 3 and 0 step by 1.5.
    lin = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin, opt = dist_utils.make_model_distributed(lin, opt)
    caught = []
    for average in (False, True, False):
        opt.zero_grad()
        (lin(torch.ones(1, 1)) * rank_grads[rank][0]).sum().backward()
        if average:
            dist_utils.average_gradients(list(lin.parameters()))
            before = lin.weight.detach().clone()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            opt.step()
        caught.append([str(w.message) for w in record])
        if average:
            out["plain_loop_step"] = lin.weight.detach() - before
    out["plain_loop_warnings"] = caught
    out["pickles_after_averaging"] = len(pickle.dumps(lin)) > 0  # no mark left on it

    # A tensor averaged for code that computes its own update (e.g. a natural gradient).
    out["average_tensor"] = dist_utils.average_tensor(torch.tensor([2.0 * rank, 1.0]))

    # A parameter with a gradient on rank 0 only: rank 1 counts zero, both get the mean.
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    loss = (a * 2).sum() + ((b * 4).sum() if rank == 0 else 0.0)
    optimizer_step(torch.optim.SGD([a, b], lr=1.0), loss)
    out["one_rank_grad"] = torch.cat([a.detach(), b.detach()])

    # Clipped parameters the optimiser does not hold (a frozen trunk a, the head b steps):
    # their gradients are averaged too, so both ranks clip by one factor. Trunk gradients
    # [3,0,0] and [0,4,0] average to [1.5,2,0]; with the head's [0,0,1] the norm is
    # sqrt(7.25), so b moves by 1/sqrt(7.25) on its third entry on both ranks.
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    loss = (rank_grads[rank] * a).sum() + b[2]
    optimizer_step(torch.optim.SGD([b], lr=1.0), loss, [a, b], 1.0)
    out["clip_beyond_optim"] = b.detach().clone()

    # Mixed dtypes: a float32 parameter with a gradient on rank 0 only gets a float32 mean
    # (a float64 one, and a raise on rank 1 only, before); a float16 first parameter does
    # not make a loss above 65504 inf (a false non-finite error on every rank).
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2))
    loss = (a * 2).sum() + ((b * 4).sum() if rank == 0 else 0.0)
    optimizer_step(torch.optim.SGD([a, b], lr=1.0), loss)
    out["mixed_dtype_grad"] = (b.grad.dtype, b.detach().clone())
    h = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    w = torch.nn.Parameter(torch.ones(2))
    out["half_first_loss"] = optimizer_step(
        torch.optim.SGD([h, w], lr=0.0), h.float().sum() + w.sum() * 1e5
    )

    # Traj(ddp=True) batching: the same episodes on both ranks.
    rng = np.random.default_rng(3)
    epis = [
        {"obs": rng.normal(size=(n, 2)).astype(np.float32), "rews": np.ones(n, np.float32)}
        for n in (10, 7, 15)
    ]
    traj = Traj(ddp=True)
    traj.add_epis(epis)
    traj.register_epis()
    # machina's averaging off (a process group of the user's own): a step on a share
    # warns, once
    from machina.utils import training

    dist_utils.set_grad_averaging(False)
    training._WARNED_SHARE[0] = False
    w = torch.nn.Parameter(torch.zeros(2))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for batch in traj.iterate(8):
            optimizer_step(torch.optim.SGD([w], lr=0.1), (batch["obs"] * w).sum())
    dist_utils.set_grad_averaging(True)
    out["not_averaging_warnings"] = [str(w.message) for w in record]
    # another batch_size per rank: refused on both (the shares overlapped, steps left out)
    try:
        next(traj.iterate(16 if rank == 0 else 8))
        out["batch_size_error"] = None
    except ValueError as e:
        out["batch_size_error"] = str(e)
    # bad indices on rank 1 only: raised on both ranks (rank 0 waited in a collective)
    try:
        next(traj.iterate(4, indices=[0, 1, 2, 3] if rank == 0 else [0, 99]))
        out["indices_error"] = None
    except (ValueError, RuntimeError) as e:
        out["indices_error"] = str(e)

    # machina.distributed's helpers inside rank_local() on rank 0 alone: one process's
    # answers (they were collectives there: rank 0 waited for a rank that never came)
    from machina import distributed as mdist

    if rank == 0:
        with dist_utils.rank_local():
            out["rank_local_helpers"] = (
                mdist.mean_over_ranks(3.0),
                mdist.gather_object(5),
                mdist.broadcast_object(7),
                mdist.barrier(),
            )

    # A NaN loss on rank 1 only: both ranks raise, neither steps, no rank waits.
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([w], 0.1)
    optimizer_step(opt, w.sum())
    before = (w.detach().clone(), copy.deepcopy(opt.state_dict()))
    scale = float("nan") if rank == 1 else 1.0
    try:
        optimizer_step(opt, (w * scale).sum(), name="unit_loss", batch={"x": w.detach() * scale})
        out["nan_error"] = None
    except NonFiniteError as e:
        out["nan_error"] = str(e)
    out["nan_unchanged"] = torch.equal(before[0], w.detach()) and all(
        torch.equal(x, y)
        for x, y in zip(before[1]["state"][0].values(), opt.state_dict()["state"][0].values())
    )
    return out


def main() -> None:
    import machina.distributed as mdist

    scenario, out_dir = sys.argv[1], sys.argv[2]
    mdist.init(timeout=60)  # a stuck collective fails within a minute instead of hanging
    torch.set_num_threads(1)
    rank = mdist.get_rank()
    out = {}
    if scenario == "three_ranks":
        from machina.utils.distributed import average_tensor

        value = torch.rand(1000, generator=torch.Generator().manual_seed(0))
        out["value"], out["averaged"] = value, average_tensor(value.clone())
        out["float32_mean_differs"] = not torch.equal((value + value + value) / 3, value)
        mdist.destroy()
        torch.save(out, f"{out_dir}/{scenario}_rank{rank}.pt")
        return
    inputs = torch.load(f"{out_dir}/inputs.pt", weights_only=False)
    if scenario == "same_data":
        for rnn in (False, True):
            pol, vf = build_ppo(rnn)
            mdist.sync_params(pol, vf)
            epis = inputs[f"epis_rnn{rnn}"]
            out[f"ppo_rnn{rnn}"] = train_ppo(
                epis, pol, vf, True, rnn, adam=False, epoch=COMPARED_EPOCHS
            )
        pol, qf = build_ddpg()
        out["ddpg"] = train_ddpg(inputs["epis_rnnFalse"], pol, qf, True)
        pol, qfs = build_sac()
        out["sac"] = train_sac(inputs["epis_rnnFalse"], pol, qfs, True)
        pol, qfs = build_sac()
        out["sac_sgd"] = train_sac(inputs["epis_rnnFalse"], pol, qfs, True, adam=False)
        pol, qfs = build_td3()
        out["td3"] = train_td3(inputs["epis_rnnFalse"], pol, qfs, True)
        out["prioritized_ddpg"] = train_prioritized_ddpg(inputs["epis_rnnFalse"], True)
        out["r2d2_sac"] = train_r2d2_sac(inputs["epis_rnnTrue"], True)
        out["diayn"] = train_diayn(inputs["epis_rnnFalse"], True)
        for rnn in (False, True):
            out[f"ppo_cart_rnn{rnn}"] = train_ppo_cartpole(inputs[f"cart_rnn{rnn}"], True, rnn)
            out[f"ppo_tail_rnn{rnn}"] = train_ppo_cartpole(
                inputs[f"cart_rnn{rnn}"], True, rnn, tail_of_one=True
            )
        out["unit"] = unit_checks(rank)
    elif scenario == "own_data":
        # Different seeds and budgets: ranks hold different numbers of steps and episodes.
        steps = inputs["steps_per_rank"][rank]
        for rnn in (False, True):
            pol, vf = build_ppo(rnn, seed=rank)  # different initial weights, synced below
            mdist.sync_params(pol, vf)
            epis = sample_epis(seed=100 + rank, max_steps=steps, rnn=rnn)
            out[f"ppo_rnn{rnn}"] = train_ppo(epis, pol, vf, False, rnn)
            out[f"num_step_rnn{rnn}"] = sum(len(e["rews"]) for e in epis)
        pol, qfs = build_sac(seed=rank)
        mdist.sync_params(pol, *qfs)
        out["sac"] = train_sac(sample_epis(seed=200 + rank, max_steps=steps), pol, qfs, False)
        out["trpo"] = train_trpo(sample_epis(seed=300 + rank, max_steps=steps), rank)
        out["ppo_kl"] = train_ppo_kl(sample_epis(seed=400 + rank, max_steps=steps), rank)
        # rank 1 holds no steps this time: every rank stops at once, told why (the others
        # waited in their first collective until the process group's timeout)
        pol, vf = build_ppo(False)
        traj = Traj()  # an empty Traj cannot be registered: nothing to add on rank 1
        if rank == 0:
            traj = make_traj(sample_epis(seed=500, max_steps=100), False, *on_policy(vf))
        start = time.monotonic()
        try:
            ppo_clip.train(
                traj=traj, pol=pol, vf=vf, optim_pol=make_optim(pol.parameters(), True),
                optim_vf=make_optim(vf.parameters(), True), epoch=1, batch_size=40,
                log_enable=False,
            )  # fmt: skip
        except (ValueError, RuntimeError) as exc:
            out["empty_rank"] = (type(exc).__name__, str(exc), time.monotonic() - start)
    else:
        raise ValueError(f"scenario: expected 'same_data' or 'own_data', got {scenario!r}")
    mdist.destroy()
    out["gloo_threads_left"] = gloo_threads()
    torch.save(out, f"{out_dir}/{scenario}_rank{rank}.pt")


def gloo_threads() -> list[str]:
    """Names of this process's gloo threads (Linux; empty elsewhere). A process group that
    outlives ``destroy`` keeps them, and they can abort the interpreter at exit."""
    if not os.path.isdir("/proc/self/task"):
        return []
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            continue
    return [n for n in names if "gloo" in n]


if __name__ == "__main__":
    main()
