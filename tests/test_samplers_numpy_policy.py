"""machina.samplers._numpy_policy (fast_inference): NumpyPolicy against the policy's own torch
call, within float32 bounds, with the same draws; what keeps the torch path."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import U, assert_within, categorical_draws_agree, float32_tolerances
from sampler_parts import cartpole, categorical_pol, gaussian_pol, lengths

from machina.envs import GymEnv
from machina.nets import PolNet, SDEPolNet
from machina.pols import CategoricalPol, GaussianPol, GaussianSDEPol, RandomPol
from machina.samplers import EpiSampler
from machina.samplers._numpy_policy import NumpyPolicy


def confident_pol(env, variant="plain"):
    """A make_pol-like MLP policy with large random weights, so its outputs vary widely;
    ``variant`` ``"sde"``: a gSDE policy (a new exploration matrix every 3 acting calls;
    ``"sde_per_env"``: one per row of the batch);
    ``"linear_mean"``: the Gaussian policy with an unsquashed mean (``squash_mean=False``);
    ``"tanh"``, ``"elu"``, ``"sde_tanh"``: machina's nets with that hidden ``activation``."""
    ob_space, ac_space = env.observation_space, env.action_space
    if variant in ("tanh", "elu"):
        torch.manual_seed(0)
        net = PolNet(ob_space, ac_space, activation=variant)
        pol_cls = GaussianPol if isinstance(ac_space, gym.spaces.Box) else CategoricalPol
        pol = pol_cls(ob_space, ac_space, net)
    elif variant == "linear_mean":
        torch.manual_seed(0)
        net = PolNet(ob_space, ac_space, squash_mean=False)
        pol = GaussianPol(ob_space, ac_space, net)
    elif variant in ("sde", "sde_per_env", "sde_tanh"):
        torch.manual_seed(0)
        net = SDEPolNet(ob_space, ac_space, activation="tanh" if variant == "sde_tanh" else "relu")
        per_env = variant == "sde_per_env"
        pol = GaussianSDEPol(
            ob_space, ac_space, net, log_std_init=-0.5, sample_freq=3, per_env_noise=per_env
        )
    elif isinstance(ac_space, gym.spaces.Box):
        pol = gaussian_pol(env)
    else:
        pol = categorical_pol(env)
    with torch.no_grad():
        for param in pol.net.parameters():
            torch.nn.init.normal_(param, std=0.5)
    return pol


#: (environment, policy variant): the kinds of numpy copy
POLICIES = [
    ("CartPole-v1", "plain"),
    ("Pendulum-v1", "plain"),
    ("Pendulum-v1", "sde"),
    ("Pendulum-v1", "sde_per_env"),
    ("Pendulum-v1", "linear_mean"),
    ("Pendulum-v1", "tanh"),
    ("CartPole-v1", "elu"),
    ("Pendulum-v1", "sde_tanh"),
]


@pytest.mark.parametrize(("env_id", "variant"), POLICIES)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_numpy_policy_matches_the_torch_policy(env_id, variant, batch):
    """NumpyPolicy (what fast_inference acts with) against the policy's own call on the same
    observations and torch RNG state: a_i within the float32 bound of two summation orders
    (``float32_tolerances``, not a constant from one CPU: 1.15e-6 > 1e-6 failed on an Intel
    Xeon, issue 11) with the same keys, shapes and dtypes, the same draws (actions equal,
    or within the bound for Gaussian), the same mode. 64 rows: torch fills 16 or more random
    values by another (vectorised) kernel. gSDE: each path on its own copy of the policy, so that
    both draw and redraw their exploration matrices at the same calls."""
    env = gym.make(env_id)
    pol = confident_pol(env, variant)
    sde = variant.startswith("sde")
    fast_pol = copy.deepcopy(pol)
    fast = NumpyPolicy.build(fast_pol, env.observation_space.shape)
    assert fast is not None
    obs = np.random.default_rng(0).normal(size=(batch, *env.observation_space.shape))
    obs = obs.astype(np.float32)
    tol = float32_tolerances(pol, obs)
    box = isinstance(env.action_space, gym.spaces.Box)
    for deterministic in (False, True):
        for seed in range(5):
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
                if key == "log_std" and not sde:
                    np.testing.assert_array_equal(value, ref)  # a copy of the parameter
                else:
                    assert_within(value, ref, tol[key], key)
            ref_ac = ref_ac.detach().numpy()
            assert ac.dtype == ref_ac.dtype and ac.shape == ref_ac.shape
            assert ac_real.dtype == ref_real.dtype and ac_real.shape == ref_real.shape
            if box:
                ac_tol = tol["mean"] if deterministic else tol["ac"]
                assert_within(ac, ref_ac, ac_tol, "ac")
                # ac_real = low + (ac + 1) (high - low) / 2, clipped: a few more ulps
                half_range = (env.action_space.high - env.action_space.low) / 2.0
                real_tol = ac_tol * half_range + 8 * U * np.abs(ref_real)
                assert_within(ac_real, ref_real, real_tol, "ac_real")
            else:
                pi_ref = ref_a_i["pi"].numpy()
                if deterministic:  # argmax: equal unless the top two are within the bound
                    top2 = np.sort(pi_ref, axis=1)[:, -2:]
                    near = top2[:, 1] - top2[:, 0] <= 2 * tol["pi"].max(axis=1)
                    assert np.all((ac == ref_ac) | near)
                else:
                    assert categorical_draws_agree(ac, ref_ac, tol["pi"], pi_ref, uniforms)
                np.testing.assert_array_equal(ac_real[ac == ref_ac], ref_real[ac == ref_ac])
            if sde:  # the same matrices, drawn at the same calls
                assert fast_pol._acting_calls == pol._acting_calls
                assert torch.equal(fast_pol.exploration_mat, pol.exploration_mat)


@pytest.mark.parametrize(("env_id", "variant"), POLICIES)
def test_numpy_policy_writes_into_given_outputs(env_id, variant):
    """With ``outs`` (rows of the engine's buffers) NumpyPolicy writes ac and every a_i entry
    into them and returns them: the same values as without, for sample and mode."""
    env = gym.make(env_id)
    pol = confident_pol(env, variant)
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    obs = np.random.default_rng(1).normal(size=(5, *env.observation_space.shape))
    obs = obs.astype(np.float32)
    for act in (fast.sample, fast.mode):
        torch.manual_seed(0)
        ref_real, ref_ac, ref_a_i = act(obs)
        outs = {"ac": np.full_like(ref_ac, 7)}
        outs.update({key: np.full_like(value, 7) for key, value in ref_a_i.items()})
        torch.manual_seed(0)
        ac_real, ac, a_i = act(obs, outs)
        assert ac is outs["ac"] and all(a_i[key] is outs[key] for key in ref_a_i)
        np.testing.assert_array_equal(ac, ref_ac)
        np.testing.assert_array_equal(ac_real, ref_real)
        for key, value in ref_a_i.items():
            np.testing.assert_array_equal(a_i[key], value)


def test_numpy_policy_raises_the_torch_paths_error_on_nan_probabilities():
    """NaN weights give NaN probabilities: NumpyPolicy raises what the policy's own call
    raises, before drawing anything from the RNG."""
    env = cartpole()
    pol = categorical_pol(env)
    with torch.no_grad():
        pol.net.fc1.weight.fill_(float("nan"))
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    obs = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError) as ref, torch.inference_mode():
        pol(torch.from_numpy(obs))
    state = torch.get_rng_state()
    with pytest.raises(ValueError) as err:
        fast.sample(obs)
    assert str(err.value) == str(ref.value)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("start", [0, 2])
def test_numpy_policy_batch_size_changes_and_action_start(start):
    """One NumpyPolicy called with changing batch sizes (as in a sample's last steps, where
    slots stop one by one; it reuses its hidden buffers per batch size) gives the torch path's
    draws every time, for a Discrete space starting at 0 (ac_real is ac itself) or not."""
    ob_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    ac_space = gym.spaces.Discrete(3, start=start)
    torch.manual_seed(0)
    pol = CategoricalPol(ob_space, ac_space, PolNet(ob_space, ac_space))
    fast = NumpyPolicy.build(pol, ob_space.shape)
    assert fast is not None
    rng = np.random.default_rng(0)
    for i, batch in enumerate([7, 1, 7, 3, 3, 64]):
        obs = rng.normal(size=(batch, 4)).astype(np.float32)
        torch.manual_seed(i)
        with torch.inference_mode():
            ref_real, ref_ac, ref_a_i = pol(torch.from_numpy(obs))
        torch.manual_seed(i)
        ac_real, ac, a_i = fast.sample(obs)
        np.testing.assert_array_equal(ac, ref_ac.numpy())
        assert ac_real.dtype == ref_real.dtype
        np.testing.assert_array_equal(ac_real, ref_real)
        assert_within(a_i["pi"], ref_a_i["pi"].numpy(), float32_tolerances(pol, obs)["pi"], "pi")
        assert ac_real.min() >= start and ac_real.max() < start + 3


@pytest.mark.parametrize(("env_id", "variant"), POLICIES)
def test_fast_inference_same_episodes_as_the_torch_policy(env_id, variant):
    """Same seed with and without fast_inference: the same draws from the same RNG, so the
    same episodes up to float32 rounding, in two layouts. Discrete actions leave no rounding
    in the trajectory (CartPole's episodes are equal); Pendulum's dynamics amplify rounding
    over the steps, so each path's a_i is checked against the policy's own call on that
    path's observations, within the float32 bound, and the trajectories are compared where
    rounding has not entered them yet (the seeded first observations and the first actions:
    for gSDE, these show that both paths use the same exploration matrix at every episode's
    start). Each sampler gets its own copy of the policy (gSDE's schedule is its state)."""
    env = GymEnv(env_id, max_episode_steps=20)
    pol = confident_pol(env, variant)
    sde = variant.startswith("sde")
    box = isinstance(env.action_space, gym.spaces.Box)
    for num_parallel, num_envs in ((1, 3), (2, 2)):
        epis = {}
        for fast in (True, False):
            path_pol = copy.deepcopy(pol)
            with EpiSampler(
                env,
                path_pol,
                num_parallel=num_parallel,
                num_envs=num_envs,
                seed=1,
                fast_inference=fast,
            ) as sampler:
                epis[fast] = sampler.sample(path_pol, max_steps=300)
                epis[fast] += sampler.sample(path_pol, max_epis=5, deterministic=True)
        assert lengths(epis[True]) == lengths(epis[False])
        for ea, eb in zip(epis[True], epis[False]):
            assert ea["acs"].dtype == eb["acs"].dtype
            np.testing.assert_array_equal(ea["obs"][0], eb["obs"][0])
            assert ea["a_is"].keys() == eb["a_is"].keys()
            for key in ea["a_is"]:
                assert ea["a_is"][key].dtype == eb["a_is"][key].dtype
            if env_id == "CartPole-v1":  # a tie within rounding never came up with this seed
                np.testing.assert_array_equal(ea["obs"], eb["obs"])
                np.testing.assert_array_equal(ea["acs"], eb["acs"])
            if box:
                first = float32_tolerances(pol, ea["obs"][:1])["ac"][0]
                assert_within(ea["acs"][0], eb["acs"][0], first, "first ac")
        for epi in epis[True]:  # the fast path's outputs against the policy's own call
            tol = float32_tolerances(pol, epi["obs"])
            with torch.no_grad():
                ref = pol.pd_params(torch.from_numpy(epi["obs"]))
            keys = ["mean", "log_std"] if sde else ["mean"] if box else ["pi"]
            for key in keys:
                assert_within(epi["a_is"][key], ref[key].numpy(), tol[key], key)


def test_numpy_policy_only_for_what_it_reproduces():
    """Policies NumpyPolicy cannot vouch for keep the torch path: subclasses (they may
    override any step), nets of custom forward, recurrent ones, hooks, other observation shapes."""
    env = cartpole()
    ob_shape = env.observation_space.shape
    assert NumpyPolicy.build(categorical_pol(env), ob_shape) is not None
    assert NumpyPolicy.build(categorical_pol(env), (5,)) is None

    class MyPol(CategoricalPol):
        pass

    net = PolNet(env.observation_space, env.action_space)
    assert NumpyPolicy.build(MyPol(env.observation_space, env.action_space, net), ob_shape) is None

    # a user's nn.Sequential MLP takes the fast path (issue 12; tests/test_fast_path_nets.py),
    # a subclass of it (it may override forward) does not
    class MySequential(torch.nn.Sequential):
        pass

    user_net = MySequential(torch.nn.Linear(4, 2), torch.nn.Softmax(-1))
    user_pol = CategoricalPol(env.observation_space, env.action_space, user_net)
    assert NumpyPolicy.build(user_pol, ob_shape) is None
    hooked = categorical_pol(env)
    hooked.net.fc2.register_forward_hook(lambda module, args, out: out * 0.0)
    assert NumpyPolicy.build(hooked, ob_shape) is None
    pendulum = gym.make("Pendulum-v1")
    assert NumpyPolicy.build(gaussian_pol(pendulum, rnn=True), (3,)) is None
    assert NumpyPolicy.build(gaussian_pol(pendulum).double(), (3,)) is None
    assert NumpyPolicy.build(RandomPol(env.observation_space, env.action_space), ob_shape) is None
    # gSDE: only GaussianSDEPol itself on machina's SDEPolNet
    sde_pol = confident_pol(pendulum, "sde")
    assert NumpyPolicy.build(sde_pol, (3,)) is not None

    class MySDEPol(GaussianSDEPol):
        pass

    sde_net = SDEPolNet(pendulum.observation_space, pendulum.action_space)
    spaces = (pendulum.observation_space, pendulum.action_space)
    assert NumpyPolicy.build(MySDEPol(*spaces, sde_net), (3,)) is None

    class MySDENet(SDEPolNet):
        pass

    assert NumpyPolicy.build(GaussianSDEPol(*spaces, MySDENet(*spaces)), (3,)) is None
    # the hooked policy is really called by the sampler: with zero features, pi is constant
    with EpiSampler(env, hooked, seed=0) as sampler:
        epis = sampler.sample(hooked, max_steps=40)
    pi = np.concatenate([epi["a_is"]["pi"] for epi in epis])
    np.testing.assert_array_equal(pi, np.broadcast_to(pi[0], pi.shape))


def test_fast_inference_invalid_pi_raises_the_policy_error():
    env = cartpole()
    pol = categorical_pol(env)
    with torch.no_grad():
        pol.net.head.output_layer.bias.fill_(np.nan)
    with EpiSampler(env, pol, seed=0) as sampler:
        with pytest.raises(ValueError, match=r"pi: expected probabilities"):
            sampler.sample(pol, max_steps=10)
