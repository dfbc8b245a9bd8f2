"""machina.utils.batch_share: a rank's share of a minibatch draws the whole minibatch's noise.

One process: a SharedBatch stands for what a rank of ``Traj(ddp=True)`` gets (the torchrun
runs of tests/test_distributed.py compare whole training runs).
"""

import pytest
import torch

from machina.pds import CategoricalPd, GaussianPd, MixtureGaussianPd
from machina.utils import batch_share
from machina.utils.batch_share import BatchShare, SharedBatch


def shared(start, stop, size, axis=0):
    return SharedBatch({"obs": torch.zeros(stop - start)}, BatchShare(start, stop, size, axis))


def test_outside_a_share_the_draws_are_torchs():
    torch.manual_seed(3)
    want = (torch.randn(5, 2), torch.rand(4))
    torch.manual_seed(3)
    with batch_share.drawing_for({"obs": torch.zeros(5)}):  # a plain dict: no share
        got = (batch_share.randn((5, 2)), batch_share.rand(4))
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("start, stop, size", [(0, 3, 7), (3, 7, 7), (2, 3, 5)])
def test_a_share_gets_its_rows_of_the_whole_draw_and_moves_the_generator_alike(start, stop, size):
    torch.manual_seed(0)
    full = torch.randn(2, size, 3)  # lead: 2 samples, then the batch axis
    after = torch.rand(1)
    torch.manual_seed(0)
    with batch_share.drawing_for(shared(start, stop, size)):
        got = batch_share.randn((2, stop - start, 3), lead=1)
    assert torch.equal(got, full[:, start:stop])
    assert torch.equal(torch.rand(1), after)  # the generator moved by the whole draw


def test_time_major_batches_share_axis_one():
    torch.manual_seed(1)
    full = torch.rand(4, 6, 2)  # (T, B, d)
    torch.manual_seed(1)
    with batch_share.drawing_for(shared(2, 5, 6, axis=1)):
        got = batch_share.rand((4, 3, 2))
    assert torch.equal(got, full[:, 2:5])


def test_a_draw_not_over_the_batch_items_is_a_plain_draw():
    torch.manual_seed(2)
    want = torch.randn(4, 3)
    torch.manual_seed(2)
    with batch_share.drawing_for(shared(0, 3, 6)):
        got = batch_share.randn((4, 3))  # 4 rows where the share has 3
    assert torch.equal(got, want)


def test_distributions_sample_the_share_of_the_whole_batch():
    """Gaussian (with sample dims), categorical and mixture samples of rows [2, 5) of a batch
    of 8 equal those rows of the whole batch's sample."""
    torch.manual_seed(4)
    mean, log_std = torch.randn(8, 2), torch.randn(8, 2) * 0.1
    pi = torch.softmax(torch.randn(8, 3), -1)
    mix = dict(pi=pi, mean=torch.randn(8, 3, 2), log_std=torch.zeros(8, 3, 2))
    cases = [
        (GaussianPd(), dict(mean=mean, log_std=log_std), torch.Size([2]), 1),
        (CategoricalPd(), dict(pi=pi), torch.Size([5]), 1),
        (CategoricalPd(), dict(pi=pi), torch.Size(), 0),
        (MixtureGaussianPd(), mix, torch.Size(), 0),
    ]
    for pd, params, sample_shape, axis in cases:
        torch.manual_seed(5)
        whole = pd.sample(params, sample_shape)
        share = {k: v[2:5] for k, v in params.items()}
        torch.manual_seed(5)
        with batch_share.drawing_for(shared(2, 5, 8)):
            got = pd.sample(share, sample_shape)
        assert torch.equal(got, whole.narrow(axis, 2, 3)), type(pd).__name__


def test_keep_share_and_bad_shares():
    batch = shared(1, 2, 4)
    moved = batch_share.keep_share({**batch, "terms": torch.ones(1)}, batch)
    assert batch_share.share_of(moved) == BatchShare(1, 2, 4)
    assert batch_share.keep_share({"a": 1}, {"a": 1}) == {"a": 1}
    with pytest.raises(ValueError, match="share"):
        BatchShare(3, 2, 4)


@pytest.mark.parametrize("save_memory", [False, True])
def test_a_cem_search_of_a_share_is_its_rows_of_the_whole_search(save_memory):
    """Both ways of searching (all rows at once, or one row at a time, drawing the other
    rows' noise and dropping it) give a share the rows of the whole minibatch's search and
    leave the generator where the single process leaves it. The Q function and the refit
    (diagonal) compute each row on its own, elementwise: a row's result does not depend on
    how many rows a matrix kernel was given, on any CPU, so the rows compare exactly."""
    import gymnasium as gym

    from machina.vfuncs import CEMDeterministicSAVfunc

    class Quadratic(torch.nn.Module):
        def forward(self, obs, acs):
            return -((acs - obs[..., :2]) ** 2).sum(-1, keepdim=True)

    ob = gym.spaces.Box(-1.0, 1.0, (3,))
    ac = gym.spaces.Box(-1.0, 1.0, (2,))
    qf = CEMDeterministicSAVfunc(
        ob, ac, Quadratic(), num_sampling=16, num_iter=2, multivari=False,
        save_memory=save_memory,
    )  # fmt: skip
    obs = torch.randn(6, 3)
    torch.manual_seed(1)
    whole_qs, whole_acs = qf.max(obs)
    after = torch.rand(1)
    torch.manual_seed(1)
    with batch_share.drawing_for(SharedBatch({"obs": obs[1:4]}, BatchShare(1, 4, 6))):
        qs, acs = qf.max(obs[1:4])
    assert torch.equal(acs, whole_acs[1:4]) and torch.equal(qs, whole_qs[1:4])
    assert torch.equal(torch.rand(1), after)


def test_plain_draws_keep_torchs_strides_and_a_rebuilt_batch_is_plain():
    """Out of a share ``randn_like`` is ``torch.randn_like`` (a permuted tensor's noise is laid
    out as its own); torch's DistributedDataParallel rebuilds input dicts as
    ``type(batch)(items)``: a SharedBatch so rebuilt is a plain batch."""
    t = torch.zeros(3, 5).T
    torch.manual_seed(0)
    want = torch.randn_like(t)
    torch.manual_seed(0)
    assert torch.equal(batch_share.randn_like(t), want)
    rebuilt = type(shared(0, 2, 4))({"obs": torch.zeros(2)}.items())
    assert isinstance(rebuilt, SharedBatch) and batch_share.share_of(rebuilt) is None


def test_standardising_a_one_step_minibatch_gives_no_warning():
    """PPO with advantages standardised per minibatch on 78 steps in minibatches of 77: the
    last one, of one step, has no spread and is left as it is, without torch.std's
    degrees-of-freedom warning."""
    import warnings

    import gymnasium as gym

    from machina.algos import ppo_clip
    from machina.pols import make_pol
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.traj import epi_functional as ef
    from machina.vfuncs import make_vf

    env = gym.make("Pendulum-v1", max_episode_steps=26)
    torch.manual_seed(0)
    pol = make_pol(env.observation_space, env.action_space, h_size=8)
    vf = make_vf(env.observation_space, h_size=8)
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=3)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_advs(ef.compute_rets(ef.compute_vs(traj, vf), 0.99), 0.99, 0.95)
    traj.register_epis()
    assert traj.num_step == 78
    optims = [torch.optim.SGD(m.parameters(), 1e-3) for m in (pol, vf)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.std of one value warns
        ppo_clip.train(
            traj=traj, pol=pol, vf=vf, optim_pol=optims[0], optim_vf=optims[1], epoch=1,
            batch_size=77, log_enable=False, minibatch_norm_advs=True,
        )  # fmt: skip
