"""Imitation: behaviour cloning, GAIL and AIRL from saved expert CartPole episodes.

The expert is a PPO policy trained once per module; its episodes go through ``Traj.save``
and ``Traj.load`` as a user's would. Pseudo-reward estimators are checked against per-step
reference loops on random episodes with terminated and truncated ends mixed.
"""

import copy
import csv
import math
import subprocess
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import example_cmd, make_random_epis, mean_return, run_example, run_examples

from machina.algos import airl, behavior_clone, gail, ppo_clip
from machina.algos._adversarial import discrim_batches
from machina.loss_functional.imitation import airl_energies, cross_ent, density_ratio_cross_ent
from machina.nets import PolNet
from machina.nets.discrim import DiscrimNet, StateDiscrimNet
from machina.pols import GaussianPol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj.epi_functional import compute_airl_pseudo_rews, compute_pseudo_rews
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc, make_vf

OB = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
AC = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
EXPERT_H = 64


def estimate(traj, vf, gamma=0.99, lam=0.95):
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, gamma)
    traj = ef.compute_advs(traj, gamma, lam)
    return ef.centerize_advs(traj)


# ------------------------------------------------------------------ estimators and losses
def test_compute_pseudo_rews_matches_per_step_loop(rng):
    torch.manual_seed(0)
    discrim = DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC))
    epis = make_random_epis(rng, 12)
    before = copy.deepcopy(epis)
    out = compute_pseudo_rews(epis, discrim)
    traj = Traj()
    traj.add_epis(epis)
    traj = compute_pseudo_rews(traj, discrim)
    with torch.no_grad():
        for epi, new, flat in zip(epis, out, traj.current_epis):
            for t in range(len(epi["rews"])):
                logit = float(discrim(epi["obs"][t : t + 1], epi["acs"][t : t + 1])[0])
                want = -math.log(1.0 - 1.0 / (1.0 + math.exp(-logit)))  # -log(1 - D)
                assert new["rews"][t] == pytest.approx(want, rel=1e-5, abs=1e-6)
                assert flat["rews"][t] == pytest.approx(want, rel=1e-5, abs=1e-6)
            np.testing.assert_array_equal(new["real_rews"], epi["rews"])
            np.testing.assert_array_equal(flat["real_rews"], epi["rews"])
    for epi, old in zip(epis, before):  # pure: the input is untouched
        np.testing.assert_array_equal(epi["rews"], old["rews"])
        assert "real_rews" not in epi
    # Estimating again replaces rews but keeps the environment's rewards.
    again = compute_pseudo_rews(out, DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC)))
    for epi, new in zip(epis, again):
        np.testing.assert_array_equal(new["real_rews"], epi["rews"])
    # State-only discriminators see observations alone.
    state_discrim = DeterministicSVfunc(OB, StateDiscrimNet(OB))
    out = compute_pseudo_rews(epis, state_discrim, state_only=True)
    with torch.no_grad():
        want = F.softplus(state_discrim(epis[0]["obs"])[0]).numpy()
    np.testing.assert_allclose(out[0]["rews"], want, rtol=1e-5)


@pytest.mark.parametrize("form", ["rew", "adv"])
def test_compute_airl_pseudo_rews_matches_per_step_loop(rng, form):
    torch.manual_seed(0)
    gamma = 0.9
    pol = GaussianPol(OB, AC, PolNet(OB, AC, 16, 16))
    if form == "rew":
        mods = dict(
            rewf=DeterministicSVfunc(OB, StateDiscrimNet(OB)),
            shaping_vf=DeterministicSVfunc(OB, StateDiscrimNet(OB)),
        )
    else:
        mods = dict(advf=DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC)))
    epis = make_random_epis(rng, 12)
    out = compute_airl_pseudo_rews(epis, pol, gamma, **mods)
    traj = Traj()
    traj.add_epis(epis)
    flat = compute_airl_pseudo_rews(traj, pol, gamma, **mods).current_epis

    def value(name, ob):
        return float(mods[name](ob[None])[0])

    ends = set()
    with torch.no_grad():
        for epi, new, new_flat in zip(epis, out, flat):
            T = len(epi["rews"])
            ends.add((bool(epi["terms"][-1]), bool(epi["truncs"][-1])))
            for t in range(T):
                ob, ac, next_ob = epi["obs"][t], epi["acs"][t], epi["next_obs"][t]
                if form == "rew":
                    # h(s') is dropped only where the episode terminated.
                    next_h = (
                        0.0 if (t == T - 1 and epi["terms"][-1]) else value("shaping_vf", next_ob)
                    )
                    f = value("rewf", ob) + gamma * next_h - value("shaping_vf", ob)
                else:
                    f = float(mods["advf"](ob[None], ac[None])[0])
                llh = float(pol.pd.llh(torch.as_tensor(ac[None]), pol.pd_params(ob[None])))
                assert new["rews"][t] == pytest.approx(f - llh, rel=1e-4, abs=1e-5)
                assert new_flat["rews"][t] == pytest.approx(f - llh, rel=1e-4, abs=1e-5)
            np.testing.assert_array_equal(new["real_rews"], epi["rews"])
    assert {(True, False), (False, True)} <= ends  # both kinds of end were exercised
    with pytest.raises(ValueError, match=r"gamma: expected a float in \[0, 1\], got 7.0"):
        compute_airl_pseudo_rews(epis, pol, 7.0, **mods)  # accepted before


def test_discriminator_losses_match_their_formulas(rng):
    torch.manual_seed(0)
    discrim = DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC))
    epi = make_random_epis(rng, 1, max_len=30)[0]
    batch = {k: torch.as_tensor(v) for k, v in epi.items() if k not in ("a_is", "e_is")}
    logits = discrim(batch["obs"], batch["acs"])[0].detach()
    d = torch.sigmoid(logits)
    ent = -(d * torch.log(d) + (1 - d) * torch.log(1 - d))
    expert = cross_ent(discrim, batch, 1, ent_beta=0.1).detach()
    agent = cross_ent(discrim, batch, 0).detach()
    assert float(expert) == pytest.approx(float(-torch.log(d).mean() - 0.1 * ent.mean()), rel=1e-5)
    assert float(agent) == pytest.approx(float(-torch.log(1 - d).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="expert_or_agent"):
        cross_ent(discrim, batch, 2)

    pol = GaussianPol(OB, AC, PolNet(OB, AC, 16, 16))
    advf = DeterministicSAVfunc(OB, AC, DiscrimNet(OB, AC))
    loss = density_ratio_cross_ent(pol, batch, 1, 0.99, advf=advf).detach()
    with torch.no_grad():
        llh = pol.pd.llh(batch["acs"], pol.pd_params(batch["obs"]))
    d = torch.sigmoid(advf(batch["obs"], batch["acs"])[0].detach() - llh)  # exp(f) / (exp(f) + pi)
    assert float(loss) == pytest.approx(float(-torch.log(d).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="rewf, shaping_vf, advf"):
        density_ratio_cross_ent(pol, batch, 1, 0.99)


# ------------------------------------------------------------------------------ expert
@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """A PPO CartPole policy, 10 of its (stochastic) episodes saved with Traj.save."""
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    pol = make_pol(env.observation_space, env.action_space, h_size=EXPERT_H)
    vf = make_vf(env.observation_space, h_size=EXPERT_H)
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-3)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-2)
    with EpiSampler(env, pol, seed=0, num_envs=8) as sampler:
        step = 0
        while step < 60_000:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=512))
            traj = estimate(traj, vf)
            traj.register_epis()
            batch_size = min(max(512, -(-traj.num_step // 2)), traj.num_step)
            ppo_clip.train(traj, pol, vf, optim_pol, optim_vf, 20, batch_size, log_enable=False)
            step += traj.num_step
            # Stop on what is asserted and saved below, the stochastic policy's return: the
            # deterministic one can balance the pole after a single update (seen: 500 after
            # 621 steps) while the stochastic one still returns ~40.
            if mean_return(sampler.sample(pol, max_epis=8)) >= 475:
                break
        epis = sampler.sample(pol, max_epis=10)
    folder = tmp_path_factory.mktemp("expert")
    saved = Traj()
    saved.add_epis(epis)
    saved.register_epis()
    saved.save(folder / "expert.npz")
    torch.save(pol.state_dict(), folder / "pol.pt")
    ret = mean_return(epis)
    assert ret >= 300, f"the expert itself did not learn CartPole: {ret}"
    return dict(path=folder / "expert.npz", pol_path=folder / "pol.pt", ret=ret)


def untrained(env, seed):
    torch.manual_seed(seed)
    pol = make_pol(env.observation_space, env.action_space, h_size=32)
    vf = make_vf(env.observation_space, h_size=32)
    return pol, vf


def test_behavior_clone_reaches_90_percent_of_expert(expert):
    expert_traj = Traj.load(expert["path"])
    env = gym.make("CartPole-v1")
    pol, _ = untrained(env, seed=1)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    losses = [
        np.mean(behavior_clone.train(expert_traj, pol, optim_pol, 256)["PolLoss"])
        for _ in range(20)
    ]
    assert losses[-1] < losses[0]
    with EpiSampler(env, pol, seed=1, num_envs=8) as sampler:
        final = mean_return(sampler.sample(pol, max_epis=16, deterministic=True))
    print(f"behaviour cloning: {final:.1f}, expert {expert['ret']:.1f}")
    assert final >= 0.9 * expert["ret"], (final, expert["ret"])
    assert behavior_clone.test(expert_traj, pol)["TestPolLoss"][0] < 0.9 * math.log(
        2
    )  # untrained: log 2


def adversarial(expert, algo, total_steps=20_000, seed=1):
    """The README's loop with pseudo rewards; returns (untrained return, final return)."""
    expert_traj = Traj.load(expert["path"])
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    pol, vf = untrained(env, seed)
    if algo == "gail":
        mods = dict(discrim=DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac)))
    else:
        mods = dict(
            rewf=DeterministicSVfunc(ob, StateDiscrimNet(ob)),
            shaping_vf=DeterministicSVfunc(ob, StateDiscrimNet(ob)),
        )
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_vf = torch.optim.Adam(vf.parameters(), 3e-3)
    optim_discrim = torch.optim.Adam(torch.nn.ModuleList(mods.values()).parameters(), 1e-3)
    kw = dict(
        rl_type="ppo_clip",
        optim_pol=optim_pol,
        epoch=10,
        batch_size=256,
        discrim_batch_size=256,
        discrim_step=10,
        log_enable=False,
    )
    with EpiSampler(env, pol, seed=seed, num_envs=8) as sampler:
        base_epis = sampler.sample(pol, max_epis=16, deterministic=True)
        step = 0
        while step < total_steps:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=1024))
            if algo == "gail":
                traj = compute_pseudo_rews(traj, mods["discrim"])
            else:
                traj = compute_airl_pseudo_rews(traj, pol, 0.99, **mods)
            traj = estimate(traj, vf)
            traj.register_epis()
            if algo == "gail":
                gail.train(
                    traj, expert_traj, pol, vf, mods["discrim"], optim_vf, optim_discrim, **kw
                )
            else:
                airl.train(
                    traj, expert_traj, pol, vf, optim_vf, optim_discrim, gamma=0.99, **mods, **kw
                )
            step += traj.num_step
        final = mean_return(sampler.sample(pol, max_epis=16, deterministic=True))
    return mean_return(base_epis), final


def test_gail_improves_cartpole_return(expert):
    base, final = adversarial(expert, "gail")
    print(f"GAIL: untrained {base:.1f} -> {final:.1f}")
    # Margin: +150 over the untrained policy's ~22 (measured: 500 after 20k steps).
    assert final >= base + 150, (base, final)


def test_airl_improves_cartpole_return(expert):
    # AIRL on CartPole is bimodal across seeds: a seed either takes off or stays near where it
    # started, and which seeds do changes with the CPU's float kernels. At 30k steps seeds 1-5
    # reached 458, 252, 50, 487, 104 (from 9-49) on an AMD EPYC, and 346, 101, 73, 500, 66 on
    # an Intel Xeon, where the median improvement (+92) fell under this margin. The mean
    # improvement counts both modes (measured: +242 and +189; the untrained policies start
    # at 9-49 on both); a learner that never takes off stays near 0.
    runs = [adversarial(expert, "airl", total_steps=30_000, seed=seed) for seed in range(1, 6)]
    gain = float(np.mean([final - base for base, final in runs]))
    print(f"AIRL: mean improvement {gain:.1f} over 5 seeds: {runs}")
    assert gain >= 100, runs


@pytest.mark.parametrize("algo", ["gail", "airl"])
def test_discriminator_tells_expert_from_untrained_policy(expert, algo):
    """CartPole rewards survival and so does a positive pseudo reward: the return tests above
    also pass with a frozen discriminator (measured: 465 for GAIL, 500 for AIRL). This one
    fails if the discriminator update is broken (e.g. labels swapped)."""
    expert_traj = Traj.load(expert["path"])
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    pol, _ = untrained(env, seed=2)
    with EpiSampler(env, pol, seed=2, num_envs=8) as sampler:
        agent_epis = sampler.sample(pol, max_steps=2000)
    agent_traj = Traj()
    agent_traj.add_epis(agent_epis)
    agent_traj.register_epis()
    if algo == "gail":
        mods = dict(discrim=DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac)))
        optim = torch.optim.Adam(mods["discrim"].parameters(), 3e-3)
        result = gail.train_discrim(agent_traj, expert_traj, mods["discrim"], optim, 256, 150)

        def pseudo(epis):
            return compute_pseudo_rews(epis, mods["discrim"])
    else:
        mods = dict(
            rewf=DeterministicSVfunc(ob, StateDiscrimNet(ob)),
            shaping_vf=DeterministicSVfunc(ob, StateDiscrimNet(ob)),
        )
        optim = torch.optim.Adam(torch.nn.ModuleList(mods.values()).parameters(), 3e-3)
        result = airl.train_discrim(agent_traj, expert_traj, pol, optim, 0.99, **mods,
                                    discrim_batch_size=256, discrim_step=150)  # fmt: skip

        def pseudo(epis):
            return compute_airl_pseudo_rews(epis, pol, 0.99, **mods)

    losses = result["DiscrimLoss"]
    assert np.mean(losses[-20:]) < 0.75 * math.log(2), losses[-20:]  # chance: log 2
    # The learned reward pays the expert's steps more than the untrained policy's.
    expert_rew = np.mean([np.mean(epi["rews"]) for epi in pseudo(expert_traj.epis())])
    agent_rew = np.mean([np.mean(epi["rews"]) for epi in pseudo(agent_epis)])
    print(f"{algo}: discrim loss {np.mean(losses[-20:]):.3f}, pseudo reward per step: expert "
          f"{expert_rew:.2f}, untrained {agent_rew:.2f}")  # fmt: skip
    assert expert_rew > agent_rew + 0.5, (expert_rew, agent_rew)


def test_adversarial_train_errors_name_the_argument(expert):
    expert_traj = Traj.load(expert["path"])
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    pol, vf = untrained(env, 0)
    discrim = DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac))
    optim = torch.optim.Adam(discrim.parameters())
    optim_vf = torch.optim.Adam(vf.parameters())
    traj = Traj()
    traj.add_epis(expert_traj.epis())
    traj = estimate(compute_pseudo_rews(traj, discrim), vf)
    traj.register_epis()
    with pytest.raises(ValueError, match="rl_type"):
        gail.train(traj, expert_traj, pol, vf, discrim, optim_vf, optim, rl_type="sac")
    with pytest.raises(ValueError, match="optim_pol"):
        gail.train(traj, expert_traj, pol, vf, discrim, optim_vf, optim, rl_type="ppo_clip")
    with pytest.raises(ValueError, match="rewf, shaping_vf"):
        airl.train(traj, expert_traj, pol, vf, optim_vf, optim, rl_type="trpo")
    # The original's misspelt keyword still works.
    result = gail.train(
        traj, expert_traj, pol, vf, discrim, optim_vf, optim_discim=optim, log_enable=False
    )
    assert len(result["DiscrimLoss"]) == 1 and result["PolLoss"]


# ------------------------------------------------- argument checks, discriminator order
@pytest.fixture(scope="module")
def small_cartpole():
    """An untrained CartPole policy and value function, 600 steps of its episodes, and 10
    episodes of another policy standing for the expert's."""
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    pol, vf = make_pol(ob, ac, h_size=16), make_vf(ob, h_size=16)
    other = make_pol(ob, ac, h_size=16)
    with EpiSampler(env, pol, seed=0, num_envs=4) as sampler:
        agent_epis = sampler.sample(pol, max_steps=600)
        expert_epis = sampler.sample(other, max_epis=10)
    return dict(ob=ob, ac=ac, pol=pol, vf=vf, agent_epis=agent_epis, expert_epis=expert_epis)


def registered(epis, drop=()):
    """A registered Traj of ``epis`` without the keys ``drop``."""
    traj = Traj()
    traj.add_epis([{k: v for k, v in epi.items() if k not in drop} for epi in epis])
    traj.register_epis()
    return traj


def airl_mods(ob, ac, form):
    if form == "rew":
        return dict(
            rewf=DeterministicSVfunc(ob, StateDiscrimNet(ob, 8, 8)),
            shaping_vf=DeterministicSVfunc(ob, StateDiscrimNet(ob, 8, 8)),
        )
    return dict(advf=DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac, 8, 8)))


def agent_traj_for(data, mods, algo):
    """``data``'s agent episodes with pseudo rewards and PPO's estimators, registered."""
    traj = Traj()
    traj.add_epis(data["agent_epis"])
    if algo == "airl":
        traj = compute_airl_pseudo_rews(traj, data["pol"], 0.99, **mods)
    else:
        traj = ef.compute_pseudo_rews(traj, mods["discrim"])
    traj = ef.compute_vs(traj, data["vf"])
    traj = ef.compute_rets(traj, 0.99)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    traj = ef.centerize_advs(traj)
    traj.register_epis()
    return traj


@pytest.mark.parametrize(
    "space, acs, message",
    [
        (gym.spaces.Discrete(2), [0, 1, 5], r"0 \.\. n - 1 of Discrete\(2\).*got 5\.0 at step 2"),
        (gym.spaces.Discrete(2), [0, 0.5, 1], r"got 0\.5 at step 1"),
        (gym.spaces.Discrete(3, start=-1), [-1, 0, 1], r"start removed.*got -1\.0 at step 0"),
        (gym.spaces.Discrete(2), [[1, 0], [0, 1], [1, 0]], r"shape \(T\) .*not one-hot"),
        # a class beyond this dimension's count fell into a padding class (probability 0)
        (gym.spaces.MultiDiscrete([3, 2]), [[0, 1], [2, 2], [1, 0]], r"got \[2\.0, 2\.0\]"),
    ],
)
def test_behavior_clone_refuses_expert_actions_that_are_not_class_indices(space, acs, message):
    ob = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    pol = make_pol(ob, space)
    acs = np.asarray(acs)
    epi = dict(
        obs=np.zeros((3, 3), np.float32), acs=acs, rews=np.zeros(3, np.float32),
        terms=np.array([0, 0, 1], bool), truncs=np.zeros(3, bool),
    )  # fmt: skip
    expert = Traj()
    expert.add_epis([epi])
    expert.register_epis()
    optim = torch.optim.Adam(pol.parameters())
    with pytest.raises(
        ValueError, match=r"behavior_clone.train: expert_traj\['acs'\]: .*" + message
    ):
        behavior_clone.train(expert, pol, optim, 4, 1, log_enable=False)
    with pytest.raises(
        ValueError, match=r"behavior_clone.test: expert_traj\['acs'\]: .*" + message
    ):
        behavior_clone.test(expert, pol)


def test_env_to_policy_acs_refuses_fractional_class_actions():
    """A dataset's discrete actions in the environment's values become class indices; a
    fraction was truncated toward 0 (2.7 -> class 2)."""
    from machina.datasets import env_to_policy_acs

    pol = make_pol(gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Discrete(3, start=-1))
    np.testing.assert_array_equal(env_to_policy_acs(pol, np.array([-1.0, 1.0])), [0, 2])
    with pytest.raises(ValueError, match=r"actions: expected whole numbers .* such as 0\.7"):
        env_to_policy_acs(pol, np.array([-1.0, 0.7]))


def test_airl_refuses_both_discriminator_forms(small_cartpole):
    """rewf + shaping_vf and advf together: an error, not a silent pick of one form."""
    ob, ac, pol, vf = (small_cartpole[k] for k in ("ob", "ac", "pol", "vf"))
    mods = {**airl_mods(ob, ac, "rew"), **airl_mods(ob, ac, "adv")}
    optim = torch.optim.Adam(torch.nn.ModuleList(mods.values()).parameters())
    expert_traj = registered(small_cartpole["expert_epis"])
    agent_traj = agent_traj_for(small_cartpole, airl_mods(ob, ac, "rew"), "airl")
    optim_vf = torch.optim.Adam(vf.parameters())
    for rew_type in ("adv", "rew", None):
        with pytest.raises(ValueError, match="rewf, shaping_vf, advf: .*not both forms"):
            airl.train(agent_traj, expert_traj, pol, vf, optim_vf, optim, **mods,
                       rew_type=rew_type, log_enable=False)  # fmt: skip
    with pytest.raises(ValueError, match="not both forms"):
        airl.train_discrim(agent_traj, expert_traj, pol, optim, 0.99, **mods)
    batch = next(agent_traj.random_batch(4))
    with pytest.raises(ValueError, match="not both forms"):
        airl_energies(batch["obs"], batch["acs"], batch["next_obs"], batch["terms"], 0.99, **mods)
    with pytest.raises(ValueError, match="not both forms"):
        compute_airl_pseudo_rews(small_cartpole["agent_epis"], pol, 0.99, **mods)


def test_airl_end_key_per_traj_and_dones_only_warns(small_cartpole):
    """Each Traj is read with its own key: ``terms`` where it has it, else ``dones`` with a
    warning naming it (its truncations then count as terminations)."""
    ob, ac, pol = small_cartpole["ob"], small_cartpole["ac"], small_cartpole["pol"]
    mods = airl_mods(ob, ac, "rew")
    optim = torch.optim.Adam(torch.nn.ModuleList(mods.values()).parameters())
    with_terms = registered(small_cartpole["agent_epis"])
    dones_only = registered(small_cartpole["expert_epis"], drop=("terms", "truncs"))
    assert "terms" not in dones_only.data_map
    with pytest.warns(UserWarning, match="expert_traj has 'dones' but no 'terms'"):
        airl.train_discrim(with_terms, dones_only, pol, optim, 0.99, **mods, discrim_step=2)
    agent_dones_only = registered(small_cartpole["agent_epis"], drop=("terms", "truncs"))
    expert_terms = registered(small_cartpole["expert_epis"])
    with pytest.warns(UserWarning, match="agent_traj has 'dones' but no 'terms'"):
        airl.train_discrim(agent_dones_only, expert_terms, pol, optim, 0.99, **mods)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both with terms: no warning
        airl.train_discrim(with_terms, expert_terms, pol, optim, 0.99, **mods)
    neither = registered(small_cartpole["expert_epis"], drop=("terms", "truncs", "dones"))
    with pytest.raises(KeyError, match="airl.train: expert_traj has no 'terms'"):
        airl.train_discrim(with_terms, neither, pol, optim, 0.99, **mods)


@pytest.mark.parametrize("algo", ["gail", "airl"])
def test_discriminator_trains_before_the_policy_step(small_cartpole, algo):
    """The first discriminator loss of ``train`` is that of the modules and the policy as they
    were when ``agent_traj`` was sampled (AIRL's logit uses that policy's ``log pi``), on the
    batches the same seed draws; then the policy step changes the policy."""
    ob, ac = small_cartpole["ob"], small_cartpole["ac"]
    pol, vf = copy.deepcopy(small_cartpole["pol"]), copy.deepcopy(small_cartpole["vf"])
    if algo == "gail":
        mods = dict(discrim=DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac, 8, 8)))
    else:
        mods = airl_mods(ob, ac, "rew")
    agent_traj = agent_traj_for(dict(small_cartpole, pol=pol, vf=vf), mods, algo)
    expert_traj = registered(small_cartpole["expert_epis"])
    before_pol, before_mods = copy.deepcopy(pol), copy.deepcopy(mods)
    # Copies draw the batches the Trajs draw first in train (a copy clones the batch
    # generator, or, not seeded yet, seeds its own from the same global state).
    before_trajs = copy.copy(agent_traj), copy.copy(expert_traj)
    optim = torch.optim.Adam(torch.nn.ModuleList(mods.values()).parameters(), 1e-2)
    kw = dict(rl_type="ppo_clip", optim_pol=torch.optim.Adam(pol.parameters(), 1e-2), epoch=2,
              batch_size=64, discrim_batch_size=64, discrim_step=2, log_enable=False)  # fmt: skip
    torch.manual_seed(5)
    optim_vf = torch.optim.Adam(vf.parameters())
    if algo == "gail":
        result = gail.train(agent_traj, expert_traj, pol, vf, mods["discrim"], optim_vf, optim,
                            **kw)  # fmt: skip
    else:
        result = airl.train(agent_traj, expert_traj, pol, vf, optim_vf, optim, **mods,
                            gamma=0.99, **kw)  # fmt: skip
    torch.manual_seed(5)
    agent, expert = next(iter(discrim_batches(*before_trajs, 64, 1)))
    with torch.no_grad():
        if algo == "gail":
            d = before_mods["discrim"]
            want = (cross_ent(d, agent, 0) + cross_ent(d, expert, 1)) / 2
        else:
            want = (
                density_ratio_cross_ent(before_pol, agent, 0, 0.99, **before_mods)
                + density_ratio_cross_ent(before_pol, expert, 1, 0.99, **before_mods)
            ) / 2
    assert result["DiscrimLoss"][0] == pytest.approx(float(want), rel=1e-5)
    changed = any(not torch.equal(p, q) for p, q in zip(pol.parameters(), before_pol.parameters()))
    assert changed and result["PolLoss"]


def test_discrim_batch_size_and_traj_errors_name_the_argument(small_cartpole):
    ob, ac, pol, vf = (small_cartpole[k] for k in ("ob", "ac", "pol", "vf"))
    discrim = DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac, 8, 8))
    optim = torch.optim.Adam(discrim.parameters())
    agent_traj = registered(small_cartpole["agent_epis"])
    expert_traj = registered(small_cartpole["expert_epis"][:1])  # fewer steps than the agent's
    n_agent, n_expert = agent_traj.num_step, expert_traj.num_step
    assert n_expert < n_agent
    with pytest.raises(ValueError, match=f"discrim_batch_size: .*{n_expert} steps expert_traj"):
        gail.train_discrim(agent_traj, expert_traj, discrim, optim, n_expert + 1)
    with pytest.raises(ValueError, match=f"discrim_batch_size: .*{n_expert} steps agent_traj"):
        gail.train_discrim(expert_traj, agent_traj, discrim, optim, n_expert + 1)
    mods = airl_mods(ob, ac, "rew")
    with pytest.raises(ValueError, match=r"airl.train: discrim_batch_size: .* expert_traj"):
        airl.train_discrim(agent_traj, expert_traj, pol, optim, 0.99, **mods,
                           discrim_batch_size=n_expert + 1)  # fmt: skip
    with pytest.raises(ValueError, match="discrim_batch_size: expected a positive int"):
        gail.train_discrim(agent_traj, expert_traj, discrim, optim, 0)
    pending = Traj()
    pending.add_epis(small_cartpole["expert_epis"])
    with pytest.raises(ValueError, match="gail.train: expert_traj holds no registered steps"):
        gail.train_discrim(agent_traj, pending, discrim, optim)
    with pytest.raises(TypeError, match="gail.train: agent_traj: expected a machina.traj.Traj"):
        gail.train_discrim(small_cartpole["agent_epis"], expert_traj, discrim, optim)
    # A bad rl_type is reported before the discriminator takes any step.
    before = copy.deepcopy(discrim.state_dict())
    traj = agent_traj_for(small_cartpole, dict(discrim=discrim), "gail")
    with pytest.raises(ValueError, match="rl_type"):
        gail.train(traj, expert_traj, pol, vf, discrim, torch.optim.Adam(vf.parameters()),
                   optim, rl_type="sac", discrim_batch_size=8)  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in discrim.state_dict().items())


def test_a_discriminator_of_the_other_kind_is_named_with_state_only():
    """A state-action discriminator with state_only=True failed inside its forward (missing
    acs); a state-only one with state_only=False took acs for a recurrent state (ignored by a
    feed-forward net: silently state-only). Both name state_only, in the loss and in the
    pseudo rewards."""
    ob = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    ac = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    batch = dict(obs=torch.zeros(4, 3), acs=torch.zeros(4, 2))
    sa = DeterministicSAVfunc(ob, ac, DiscrimNet(ob, ac))
    s = DeterministicSVfunc(ob, StateDiscrimNet(ob))
    with pytest.raises(TypeError, match=r"state_only=True.*DeterministicSAVfunc.*state_only="):
        cross_ent(sa, batch, 1, state_only=True)
    with pytest.raises(TypeError, match=r"state-only DeterministicSVfunc with state_only=False"):
        cross_ent(s, batch, 1)
    traj = Traj()
    traj.add_epis(make_random_epis(np.random.default_rng(0), 3, ob_dim=3))
    with pytest.raises(TypeError, match="state_only=False"):
        compute_pseudo_rews(traj, s)
    for discrim, state_only in ((sa, False), (s, True)):  # the right pairs
        assert cross_ent(discrim, batch, 1, state_only=state_only).isfinite()


# ---------------------------------------------------------------------------- examples
def test_imitation_examples_run(expert, tmp_path):
    epis_path = tmp_path / "expert.npz"
    out = run_example(
        "make_expert_epis.py",
        "--pol_path", expert["pol_path"], "--h_size", EXPERT_H,
        "--num_epis", 3, "--epis_path", epis_path,
    )  # fmt: skip
    assert "3 expert episodes" in out.stdout
    assert Traj.load(epis_path).num_epi == 3
    # --h_size reaches the discriminators: every layer of theirs has 8 units.
    runs = [
        ("run_behavior_clone.py", (), "--epoch", 2, "--eval_interval", 1),
        ("run_gail.py", ("discrim",), "--rl_type", "trpo", "--max_steps", 300,
         "--steps_per_iter", 150, "--h_size", 8),
        ("run_airl.py", ("advf",), "--rew_type", "adv", "--rl_type", "ppo_kl", "--max_steps",
         300, "--steps_per_iter", 150, "--pretrain", "--bc_epoch", 1, "--h_size", 8),
        ("run_airl.py", ("rewf", "shaping_vf"), "--max_steps", 100, "--steps_per_iter", 100,
         "--discrim_step", 1, "--epoch_per_iter", 1, "--h_size", 8),
    ]  # fmt: skip
    logs = [tmp_path / f"{i}_{script}" for i, (script, *_) in enumerate(runs)]
    common = ["--expert_path", epis_path, "--eval_epis", 2]
    run_examples(
        [(script, [*common, "--log", log, *args]) for (script, _, *args), log in zip(runs, logs)]
    )
    for (_, discrims, *_), log in zip(runs, logs):
        assert (log / "progress.csv").stat().st_size > 0
        assert (log / "models" / "pol_last.pt").stat().st_size > 0
        for name in discrims:
            state = torch.load(log / "models" / f"{name}_last.pt")
            weights = [p for key, p in state.items() if key.endswith("weight")]
            assert weights and all(8 in p.shape for p in weights), (name, state.keys())


def test_run_gail_and_airl_resume_bit_for_bit(expert, tmp_path):
    """GAIL (ppo_kl: its adaptive penalty is run state; behaviour-cloning pretraining, not
    repeated on resume) stopped at 150 steps and resumed to 300 (its end-of-budget evaluation
    rewound) equals the 300-step run; AIRL killed after its checkpoint at 150, resumed, equals
    the uninterrupted run."""
    from conftest import (
        check_examples_resume_after_crash,
        check_examples_resume_with_a_larger_budget,
    )

    common = ["--expert_path", expert["path"], "--eval_epis", 1, "--steps_per_iter", 150,
              "--h_size", 8, "--num_envs", 2]  # fmt: skip
    gail = [*common, "--rl_type", "ppo_kl", "--pretrain", "--bc_epoch", 1]
    ((gail_state, _),) = check_examples_resume_with_a_larger_budget(
        [("run_gail.py", gail)], tmp_path / "gail", (150, 300)
    )
    airl = [*common, "--max_steps", 300, "--discrim_step", 2, "--epoch_per_iter", 2]
    ((airl_state, _),) = check_examples_resume_after_crash(
        [("run_airl.py", airl)], tmp_path / "airl"
    )
    assert "kl_beta" in gail_state and "discrim" in gail_state
    assert {"rewf", "shaping_vf"} <= {key.split(".")[0] for key in airl_state["discrim"]}


def test_run_behavior_clone_names_an_empty_split_and_takes_interval_0(expert, tmp_path):
    """--train_size leaving no episode on a side failed in register_epis, unnamed;
    --eval_interval 0 failed in logger.Run (run_ppo.py's 0 evaluates every iteration)."""
    common = ["--expert_path", expert["path"], "--eval_epis", 1, "--h_size", 8]
    for size, side in (("1.0", "the held-out test loss"), ("0.0", "training")):
        cmd = example_cmd("run_behavior_clone.py", *common, "--train_size", size,
                          "--log", tmp_path / "split")  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"--train_size {size}: of the" in proc.stderr and f"left for {side}" in proc.stderr
    assert not (tmp_path / "split").exists()
    cmd = example_cmd("run_behavior_clone.py", *common, "--eval_interval", "-1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "argument --eval_interval: expected an integer >= 0" in proc.stderr
    log = tmp_path / "every"
    run_example("run_behavior_clone.py", *common, "--eval_interval", 0, "--epoch", 2, "--log", log)
    with open(log / "progress.csv", newline="") as f:
        assert [row["EvalReturn"] != "" for row in csv.DictReader(f)] == [True, True]


def test_run_behavior_clone_resumes_bit_for_bit(expert, tmp_path):
    """Two epochs, then --resume to four, equal four uninterrupted: the checkpoint holds the
    training Traj's batch generator and the evaluation sampler, not only the policy."""
    from machina.checkpoint import latest_checkpoint

    common = ["--expert_path", expert["path"], "--eval_interval", 1, "--eval_epis", 1,
              "--batch_size", 64, "--h_size", 8]  # fmt: skip
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    run_examples(
        [
            ("run_behavior_clone.py", [*common, "--log", whole, "--epoch", 4]),
            ("run_behavior_clone.py", [*common, "--log", halves, "--epoch", 2]),
        ]
    )
    run_example("run_behavior_clone.py", *common, "--resume", halves, "--epoch", 4)
    a, b = (
        torch.load(latest_checkpoint(d) / "state.pt", weights_only=True) for d in (whole, halves)
    )
    assert "sampler" in a and "batch_order" in a  # the eval sampler, the Traj's generator
    rows = [(d / "progress.csv").read_text().splitlines() for d in (whole, halves)]
    assert len(rows[0]) == 5 and rows[0] == rows[1]  # header + one row per epoch, equal
    for name, tensor in a["pol"].items():
        assert torch.equal(tensor, b["pol"][name]), name


def test_make_expert_epis_reads_the_settings_of_a_run_without_args_json(tmp_path):
    """run_trpo.py writes no args.json: --log takes the environment and the policy's size from
    the settings its checkpoints keep (the flags' defaults would be CartPole and 64 units)."""
    run_dir = tmp_path / "trpo"
    run_example(
        "run_trpo.py",
        *("--env_name", "Pendulum-v1", "--log", run_dir, "--h_size", 16),
        *("--max_steps", 400, "--steps_per_iter", 400),
    )
    assert not (run_dir / "args.json").exists()
    epis_path = tmp_path / "epis.npz"
    out = run_example(
        "make_expert_epis.py", "--log", run_dir, "--num_epis", 2, "--epis_path", epis_path
    ).stdout
    assert "h_size=16" in out
    traj = Traj.load(epis_path)
    assert traj.num_epi == 2 and traj.data_map["obs"].shape == (400, 3)  # Pendulum's
    # a flag given wins over the run's setting (--normalize_ob was take_movie.py's only);
    # this run kept no statistics to normalise with
    cmd = example_cmd(
        "make_expert_epis.py", "--log", run_dir, "--num_epis", 1, "--epis_path", epis_path,
        "--normalize_ob",
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "normalize_ob=True" in proc.stdout
    assert "prepro_last.pt is missing: the run did not normalise its observations" in proc.stderr
