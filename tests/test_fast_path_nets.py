"""The sampler's numpy fast path on users' feed-forward nets (issue 12, item 2).

A policy on an ``nn.Sequential`` of ``nn.Linear`` and elementwise activations, ending in
``nn.Softmax`` or machina's stochastic head, acts in numpy (``NumpyPolicy``) with the torch
path's draws and the torch path's distribution parameters to float32 rounding, per activation
type; anything else (custom forward, subclasses, unknown modules, hooks) keeps the torch path.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ACTIVATIONS, U, assert_within, categorical_draws_agree, float32_tolerances
from torch import nn

from machina.envs import GymEnv
from machina.nets import HIDDEN_ACTIVATIONS, PolHead, PolNet
from machina.pols import CategoricalPol, GaussianPol
from machina.samplers import EpiSampler
from machina.samplers._numpy_policy import NumpyPolicy

# the name each activation has in the spec (numpy_inference()["ops"])
NAMES = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "silu": "silu",
    "elu": "elu",
    "leaky_relu": "leaky_relu",
    "selu": "selu",
    "gelu": "gelu",
    "gelu_tanh": "gelu",
    "softplus": "softplus",
    "mish": "mish",
}


def spread(net):
    """Large random weights, so that activations see both signs and wide ranges."""
    torch.manual_seed(0)
    with torch.no_grad():
        for param in net.parameters():
            nn.init.normal_(param, std=0.6)
    return net


def categorical_seq(act, hidden=16):
    env = gym.make("CartPole-v1")
    net = nn.Sequential(
        nn.Linear(4, hidden),
        act,
        nn.Linear(hidden, hidden),
        act,
        nn.Linear(hidden, 2),
        nn.Softmax(-1),
    )
    return env, CategoricalPol(env.observation_space, env.action_space, spread(net))


def gaussian_seq(act, hidden=16):
    env = gym.make("Pendulum-v1")
    head = PolHead(hidden, env.action_space, "user net")
    net = nn.Sequential(nn.Linear(3, hidden), act, nn.Linear(hidden, hidden), act, head)
    return env, GaussianPol(env.observation_space, env.action_space, spread(net))


def check_against_torch(env, pol, batch):
    """NumpyPolicy against the policy's own call on the same observations and torch RNG
    state: a_i within the float32 bound, the same draws (within the bound for Gaussian
    actions, or a tie within rounding for categorical ones), the same mode."""
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    assert fast is not None
    obs = np.random.default_rng(1).normal(size=(batch, *env.observation_space.shape))
    obs = (2.0 * obs).astype(np.float32)
    tol = float32_tolerances(pol.numpy_inference(), obs)
    box = isinstance(env.action_space, gym.spaces.Box)
    for deterministic in (False, True):
        for seed in range(3):
            torch.manual_seed(seed)
            with torch.inference_mode():
                act = pol.deterministic_ac_real if deterministic else pol
                ref_real, ref_ac, ref_a_i = act(torch.from_numpy(obs))
            torch.manual_seed(seed)
            uniforms = torch.rand(batch).numpy()  # the categorical draws of both paths
            torch.manual_seed(seed)
            ac_real, ac, a_i = (fast.mode if deterministic else fast.sample)(obs)
            assert a_i.keys() == ref_a_i.keys()
            for key, value in a_i.items():
                ref = ref_a_i[key].detach().numpy()
                assert value.dtype == ref.dtype and value.shape == ref.shape
                if key == "log_std":
                    np.testing.assert_array_equal(value, ref)
                else:
                    assert_within(value, ref, tol[key], key)
            ref_ac = ref_ac.detach().numpy()
            assert ac.dtype == ref_ac.dtype and ac.shape == ref_ac.shape
            assert ac_real.dtype == ref_real.dtype and ac_real.shape == ref_real.shape
            if box:
                ac_tol = tol["mean"] if deterministic else tol["ac"]
                assert_within(ac, ref_ac, ac_tol, "ac")
                half_range = (env.action_space.high - env.action_space.low) / 2.0
                assert_within(ac_real, ref_real, ac_tol * half_range + 8 * U * 2.0, "ac_real")
            else:
                pi_ref = ref_a_i["pi"].numpy()
                if deterministic:
                    top2 = np.sort(pi_ref, axis=1)[:, -2:]
                    near = top2[:, 1] - top2[:, 0] <= 2 * tol["pi"].max(axis=1)
                    assert np.all((ac == ref_ac) | near)
                else:
                    assert categorical_draws_agree(ac, ref_ac, tol["pi"], pi_ref, uniforms)
                np.testing.assert_array_equal(ac_real[ac == ref_ac], ref_real[ac == ref_ac])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("batch", [3, 64])
def test_categorical_sequential_per_activation(name, batch):
    """Linear, act, Linear, act, Linear, Softmax: the fast path, as torch computes it. 64
    rows: torch's elementwise kernels then meet most entries in their vectorised form."""
    env, pol = categorical_seq(ACTIVATIONS[name][0])
    ops = pol.numpy_inference()["ops"]
    assert [op[1] for op in ops if op[0] == "act"] == [NAMES[name]] * 2
    check_against_torch(env, pol, batch)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gaussian_sequential_per_activation(name):
    """Linear, act, Linear, act, machina's stochastic head: (mean, log_std) as GaussianPol
    wants them, on the fast path."""
    env, pol = gaussian_seq(ACTIVATIONS[name][0])
    check_against_torch(env, pol, 64)


@pytest.mark.parametrize("name", sorted(HIDDEN_ACTIVATIONS))
@pytest.mark.parametrize("space", ["gaussian", "categorical"])
def test_polnet_of_each_activation_on_the_fast_path(name, space):
    """machina's PolNet with any ``activation``: the fast path, as torch computes it."""
    env = gym.make("Pendulum-v1" if space == "gaussian" else "CartPole-v1")
    net = spread(PolNet(env.observation_space, env.action_space, activation=name))
    pol_cls = GaussianPol if space == "gaussian" else CategoricalPol
    pol = pol_cls(env.observation_space, env.action_space, net)
    ops = pol.numpy_inference()["ops"]
    assert [op[1] for op in ops if op[0] == "act"][:2] == [NAMES[name]] * 2
    check_against_torch(env, pol, 64)


def test_sequential_variants_take_the_fast_path():
    """Nested Sequentials, a leading Flatten, Identity, Dropout of p = 0, linear layers
    without bias or without an activation between them, a single linear layer."""
    env = gym.make("CartPole-v1")
    nets = [
        nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.Tanh()), nn.Linear(8, 2), nn.Softmax(1)),
        nn.Sequential(
            nn.Flatten(), nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2), nn.Softmax(-1)
        ),
        nn.Sequential(
            nn.Linear(4, 8),
            nn.Identity(),
            nn.Linear(8, 5),
            nn.ELU(),
            nn.Linear(5, 2),
            nn.Softmax(-1),
        ),
        nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.0), nn.SiLU(), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Tanh(), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), PolHead(8, env.action_space, "user net")),
    ]
    for net in nets:
        pol = CategoricalPol(env.observation_space, env.action_space, spread(net))
        check_against_torch(env, pol, 7)


def test_other_nets_keep_the_torch_path():
    """A subclass of Sequential or of an activation (either may override forward), modules
    the path does not know, an activation first, softmax over the batch axis, Dropout in
    training mode, a hook, float64, 2-D observations without Flatten, a custom Gaussian
    module."""
    env = gym.make("CartPole-v1")
    space, ac_space = env.observation_space, env.action_space

    class MyTanh(nn.Tanh):
        pass

    class MySequential(nn.Sequential):
        pass

    nets = [
        MySequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), MyTanh(), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), nn.Hardswish(), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2), nn.Softmax(-1)),
        nn.Sequential(nn.Tanh(), nn.Linear(4, 2), nn.Softmax(-1)),
    ]
    for net in nets:
        pol = CategoricalPol(space, ac_space, net)
        assert NumpyPolicy.build(pol, space.shape) is None, net
    # softmax over the batch axis: no probabilities per row, refused at construction; set
    # afterwards, the numpy path still does not take it
    over_batch = nn.Sequential(nn.Linear(4, 2), nn.Softmax(0))
    with pytest.raises(ValueError, match=r"net: CategoricalPol needs a net returning prob"):
        CategoricalPol(space, ac_space, over_batch)
    pol = CategoricalPol(space, ac_space, nn.Sequential(nn.Linear(4, 2), nn.Softmax(-1)))
    pol.net = over_batch
    assert NumpyPolicy.build(pol, space.shape) is None
    hooked = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Softmax(-1))
    hooked[1].register_forward_hook(lambda module, args, out: out * 0.0)
    assert NumpyPolicy.build(CategoricalPol(space, ac_space, hooked), space.shape) is None
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Softmax(-1)).double()
    torch.set_default_dtype(torch.float64)
    try:
        pol = CategoricalPol(space, ac_space, net)
    finally:
        torch.set_default_dtype(torch.float32)
    assert NumpyPolicy.build(pol, space.shape) is None
    # 2-D observations: nn.Linear acts on the last axis only, no MLP of the whole observation
    grid = gym.spaces.Box(-1.0, 1.0, (2, 4), np.float32)
    odd = nn.Sequential(nn.Linear(4, 2), nn.Softmax(-1))
    assert NumpyPolicy.build(CategoricalPol(grid, ac_space, odd), grid.shape) is None
    flat = nn.Sequential(nn.Flatten(), nn.Linear(8, 2), nn.Softmax(-1))
    assert NumpyPolicy.build(CategoricalPol(grid, ac_space, flat), grid.shape) is not None

    class Gaussian(nn.Module):  # (mean, log_std) by a custom forward
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1), nn.Tanh())
            self.log_std = nn.Parameter(torch.zeros(1))

        def forward(self, obs):
            mean = self.body(obs)
            return mean, self.log_std.expand_as(mean)

    pendulum = gym.make("Pendulum-v1")
    pol = GaussianPol(pendulum.observation_space, pendulum.action_space, Gaussian())
    assert NumpyPolicy.build(pol, (3,)) is None


def test_replaced_layers_instance_forwards_and_autocast_keep_the_torch_path():
    """The layers inside machina's own nets were not type-checked: a Linear subclass ran as
    a plain Linear (pi off by up to 0.5), a module without .weight crashed the sampler, and
    spectral norm's parametrised layer ran on its snapshot. A forward set on an instance,
    and autocast (torch's Linear in bfloat16), are not the copy's arithmetic either."""
    space, ac_space = (
        gym.make("CartPole-v1").observation_space,
        gym.make("CartPole-v1").action_space,
    )

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2.0 * super().forward(x)

    def polnet():
        torch.manual_seed(0)
        return PolNet(space, ac_space)

    plain = CategoricalPol(space, ac_space, polnet())
    assert NumpyPolicy.build(plain, space.shape) is not None
    replaced = []
    net = polnet()
    net.fc1 = Scaled(4, 64)
    replaced.append(net)
    net = polnet()
    net.fc1 = nn.Sequential(nn.Linear(4, 64), nn.LayerNorm(64))  # no .weight: crashed
    replaced.append(net)
    net = polnet()
    net.fc2 = torch.nn.utils.parametrizations.spectral_norm(net.fc2)
    replaced.append(net)
    head = PolHead(8, ac_space, "u")
    head.output_layer = Scaled(8, 2)
    replaced.append(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), head))
    net = polnet()
    net.forward = lambda obs, **kwargs: type(net).forward(net, obs * 2.0, **kwargs)
    replaced.append(net)
    for net in replaced:
        assert NumpyPolicy.build(CategoricalPol(space, ac_space, net), space.shape) is None
    pol = CategoricalPol(space, ac_space, replaced[1])
    with EpiSampler(GymEnv("CartPole-v1"), pol) as s:
        assert len(s.sample(pol, max_epis=1)) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert NumpyPolicy.build(plain, space.shape) is None


def test_vector_envs_get_their_own_action_array():
    """Discrete actions from 0: the fast path gave the env the stored actions' row itself;
    an env writing into its action array changed the recorded actions."""

    class Scribbles(gym.vector.VectorWrapper):
        def step(self, actions):
            out = self.env.step(actions)
            actions[...] = 7
            return out

    def make():
        envs = [lambda: gym.make("CartPole-v1", max_episode_steps=20)] * 2
        return Scribbles(gym.vector.SyncVectorEnv(envs))

    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    pol = CategoricalPol(
        env.observation_space,
        env.action_space,
        spread(PolNet(env.observation_space, env.action_space)),
    )
    assert NumpyPolicy.build(pol, env.observation_space.shape) is not None
    with EpiSampler(make(), pol, seed=1, num_envs=2) as s:
        acs = np.concatenate([e["acs"] for e in s.sample(pol, max_steps=40)])
    assert set(np.unique(acs).tolist()) <= {0, 1}


def test_sampler_same_episodes_with_a_user_sequential():
    """EpiSampler with a user's nn.Sequential (64x64 Tanh) policy: fast path on and off give
    the same CartPole episodes (discrete draws leave no rounding in the trajectory), and the
    stored pi is the policy's own within the float32 bound."""
    env = GymEnv("CartPole-v1", max_episode_steps=30)
    _, pol = categorical_seq(nn.Tanh(), hidden=64)
    epis = {}
    for fast in (True, False):
        with EpiSampler(env, pol, num_envs=3, seed=2, fast_inference=fast) as sampler:
            epis[fast] = sampler.sample(pol, max_steps=150)
    assert [len(e["rews"]) for e in epis[True]] == [len(e["rews"]) for e in epis[False]]
    for ea, eb in zip(epis[True], epis[False]):
        np.testing.assert_array_equal(ea["obs"], eb["obs"])
        np.testing.assert_array_equal(ea["acs"], eb["acs"])
    spec = pol.numpy_inference()
    for epi in epis[True]:
        with torch.no_grad():
            ref = pol.pd_params(torch.from_numpy(epi["obs"]))["pi"].numpy()
        assert_within(epi["a_is"]["pi"], ref, float32_tolerances(spec, epi["obs"])["pi"], "pi")
