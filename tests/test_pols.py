"""Policies: bounds, modes, shapes, recurrent resets, input checks; and the LSTM nets."""

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from machina.nets import PolNet, PolNetLSTM
from machina.nets.lstm import run_lstm
from machina.pols import (
    CategoricalPol,
    GaussianPol,
    MultiCategoricalPol,
    RandomPol,
    TanhGaussianPol,
)
from machina.pols import make_pol as machina_make_pol

OB_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
BOX = gym.spaces.Box(
    np.array([-2.0, -1.0, 0.0], dtype=np.float32), np.array([2.0, 3.0, 0.5], dtype=np.float32)
)
DISCRETE = gym.spaces.Discrete(4, start=1)
MULTI = gym.spaces.MultiDiscrete([2, 5, 3])


def make_pol(kind: str, rnn: bool, action_space=None):
    torch.manual_seed(0)
    cls, space = {
        "gauss": (GaussianPol, BOX),
        "cat": (CategoricalPol, DISCRETE),
        "multi": (MultiCategoricalPol, MULTI),
    }[kind]
    space = action_space or space
    net = PolNetLSTM(OB_SPACE, space, 16, 16) if rnn else PolNet(OB_SPACE, space, 16, 16)
    return cls(OB_SPACE, space, net, rnn=rnn)


def random_obs(*lead, seed=0):
    return np.random.default_rng(seed).normal(size=(*lead, 3)).astype(np.float32)


AC_SHAPES = {"gauss": (3,), "cat": (), "multi": (3,)}
PARAM_SHAPES = {
    "gauss": {"mean": (3,), "log_std": (3,)},
    "cat": {"pi": (4,)},
    "multi": {"pi": (3, 5)},
}


@pytest.mark.parametrize("rnn", [False, True])
@pytest.mark.parametrize("kind", ["gauss", "cat", "multi"])
def test_output_shapes(kind, rnn):
    pol = make_pol(kind, rnn)
    lead = (5, 2) if rnn else (4,)
    for act in (pol, pol.deterministic_ac_real):
        ac_real, ac, a_i = act(random_obs(*lead))
        assert isinstance(ac_real, np.ndarray) and ac_real.shape == lead + AC_SHAPES[kind]
        assert isinstance(ac, torch.Tensor) and ac.shape == lead + AC_SHAPES[kind]
        assert {key: tuple(v.shape) for key, v in a_i.items()} == {
            key: lead + shape for key, shape in PARAM_SHAPES[kind].items()
        }
        assert pol.action_space.contains(ac_real.reshape(-1, *AC_SHAPES[kind])[0])


@pytest.mark.parametrize("rnn", [False, True])
def test_gaussian_actions_stay_within_bounds(rnn):
    pol = make_pol("gauss", rnn)
    with torch.no_grad():
        # saturate the tanh sometimes and make samples leave [-1, 1] often
        torch.nn.init.normal_(pol.net.head.mean_layer.weight, std=3.0)
        pol.net.head.log_std_param.fill_(0.5)
    lead = (50, 40) if rnn else (2000,)
    ac_real, ac, _ = pol(random_obs(*lead))
    assert (ac_real >= BOX.low).all() and (ac_real <= BOX.high).all()
    ac = ac.detach().numpy()
    outside = np.abs(ac) > 1.0
    assert outside.any() and (~outside).any()
    scaled = BOX.low + (ac + 1.0) * 0.5 * (BOX.high - BOX.low)
    np.testing.assert_allclose(ac_real[~outside], scaled[~outside], rtol=1e-5, atol=1e-6)


def test_linear_mean_is_unbounded_and_actions_are_clipped():
    """PolNet(squash_mean=False): the mean is the head's linear output (no tanh), the sampled
    actions' log-likelihood is of that unbounded Gaussian, and what reaches the environment is
    clipped to the bounds (stable-baselines3's scheme)."""
    torch.manual_seed(0)
    net = PolNet(OB_SPACE, BOX, 16, 16, squash_mean=False)
    pol = GaussianPol(OB_SPACE, BOX, net)
    with torch.no_grad():
        net.head.mean_layer.bias.fill_(3.0)
    obs = random_obs(500)
    ac_real, ac, a_i = pol(obs)
    with torch.no_grad():
        h = torch.relu(net.fc2(torch.relu(net.fc1(torch.from_numpy(obs)))))
        expected = net.head.mean_layer(h)
    assert_close(a_i["mean"], expected)
    assert (a_i["mean"] > 1.0).all()
    assert (ac_real >= BOX.low).all() and (ac_real <= BOX.high).all()
    np.testing.assert_array_equal(pol.deterministic_ac_real(obs)[0], np.tile(BOX.high, (500, 1)))
    reference = torch.distributions.Normal(a_i["mean"], a_i["log_std"].exp())
    llh = pol.pd.llh(ac, a_i)
    assert_close(llh, reference.log_prob(ac).sum(-1), rtol=1e-5, atol=1e-5)


def test_make_pol_squash_mean_for_box_spaces():
    from machina.pols import make_pol as make

    for rnn in (False, True):
        pol = make(OB_SPACE, BOX, rnn=rnn, squash_mean=False)
        assert not pol.net.head.squash_mean and make(OB_SPACE, BOX, rnn=rnn).net.head.squash_mean
    assert make(OB_SPACE, BOX, sde_sample_freq=4, squash_mean=False).sample_freq == 4
    with pytest.raises(ValueError, match=r"^squash_mean: "):
        make(OB_SPACE, DISCRETE, squash_mean=False)


def test_make_pol_sde_per_env_noise():
    from machina.pols import make_pol as make

    assert make(OB_SPACE, BOX, sde_sample_freq=4, sde_per_env_noise=True).per_env_noise
    assert not make(OB_SPACE, BOX, sde_sample_freq=4).per_env_noise
    with pytest.raises(ValueError, match=r"^sde_per_env_noise: .*got None"):
        make(OB_SPACE, BOX, sde_per_env_noise=True)


def test_agent_infos_under_no_grad_need_no_detach():
    """Under torch.no_grad() every a_i tensor reads as numpy: the expanded log-std, a view
    of a parameter, kept requires_grad there; with gradients on it still backpropagates."""
    from machina.nets.mixture import MixturePolNet
    from machina.pols import MixtureGaussianPol

    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    pols = [
        GaussianPol(ob, ac, PolNet(ob, ac, 8, 8)),
        MixtureGaussianPol(ob, ac, MixturePolNet(ob, ac, 3, 8, 8)),
    ]
    for pol in pols:
        with torch.no_grad():
            a_i = pol(torch.zeros(2, 3))[-1]
        for key, value in a_i.items():
            if isinstance(value, torch.Tensor):
                assert not value.requires_grad, (type(pol).__name__, key)
                value.numpy()
        assert pol(torch.zeros(2, 3))[-1]["log_std"].requires_grad


def test_convert_ac_for_real_keeps_type_and_maps_endpoints():
    pol = make_pol("gauss", False)
    ac = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 5.0, -5.0]], dtype=np.float32)
    real = pol.convert_ac_for_real(ac)
    assert isinstance(real, np.ndarray) and real.dtype == np.float32
    np.testing.assert_allclose(real, [BOX.low, BOX.high, [0.0, 3.0, 0.0]])
    real_t = pol.convert_ac_for_real(torch.as_tensor(ac))
    assert isinstance(real_t, torch.Tensor)
    np.testing.assert_allclose(real_t.numpy(), real)


def test_gaussian_without_normalize_ac_only_clips():
    torch.manual_seed(0)
    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
    pol = GaussianPol(OB_SPACE, unbounded, PolNet(OB_SPACE, unbounded), normalize_ac=False)
    ac_real, ac, _ = pol(random_obs(8))
    np.testing.assert_array_equal(ac_real, ac.detach().numpy())
    pol = GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX), normalize_ac=False)
    ac = np.array([[-5.0, 0.5, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(pol.convert_ac_for_real(ac), [[-2.0, 0.5, 0.25]])


@pytest.mark.parametrize("rnn", [False, True])
@pytest.mark.parametrize("kind", ["gauss", "cat", "multi"])
def test_deterministic_ac_is_the_mode(kind, rnn):
    pol = make_pol(kind, rnn)
    obs = random_obs(3, 2) if rnn else random_obs(6)
    ac_real, ac, a_i = pol.deterministic_ac_real(obs)
    mode = a_i["mean"] if kind == "gauss" else torch.argmax(a_i["pi"], dim=-1)
    assert torch.equal(ac, mode)
    pol.reset()
    np.testing.assert_array_equal(ac_real, pol.convert_ac_for_real(mode.detach().numpy()))
    if kind != "gauss":
        np.testing.assert_array_equal(ac_real, ac.numpy() + pol.action_space.start)


@pytest.mark.parametrize("kind", ["gauss", "cat", "multi"])
def test_recurrent_h_masks_reset_the_state(kind):
    pol = make_pol(kind, rnn=True)
    with torch.no_grad():  # outputs far from uniform, so that equal outputs mean equal states
        for layer in pol.net.head.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.normal_(layer.weight, std=1.0)
    obs = random_obs(6, 2)
    hs = tuple(torch.randn_like(h) for h in pol.net.init_hs(2))
    h_masks = np.zeros((6, 2), dtype=np.float32)
    h_masks[3, 0] = 1.0  # a new episode starts at step 3 in column 0
    _, _, a_i = pol.deterministic_ac_real(obs, hs=hs, h_masks=h_masks)
    _, _, fresh = pol.deterministic_ac_real(obs[3:, :1], hs=pol.net.init_hs(1))
    _, _, unmasked = pol.deterministic_ac_real(obs, hs=hs)
    key = "mean" if kind == "gauss" else "pi"
    assert_close(a_i[key][3:, :1], fresh[key])
    assert_close(a_i[key][:, 1:], unmasked[key][:, 1:])  # the other column carries on
    assert (unmasked[key][3:, :1] - fresh[key]).abs().max() > 1e-3  # the test can fail


def test_stored_hidden_state_continues_across_calls():
    pol = make_pol("gauss", rnn=True)
    obs, h_masks = random_obs(6, 3), np.zeros((6, 3), dtype=np.float32)
    h_masks[0], h_masks[4, 1] = 1.0, 1.0
    pol.reset()
    _, _, whole = pol.deterministic_ac_real(obs, h_masks=h_masks)
    pol.reset()
    steps = [pol.deterministic_ac_real(obs[t], h_masks=h_masks[t : t + 1])[2] for t in range(6)]
    assert steps[0]["mean"].shape == (1, 3, 3)
    assert_close(torch.cat([step["mean"] for step in steps]), whole["mean"])
    # a new batch size re-initialises the stored state instead of failing
    assert pol(random_obs(1, 5))[1].shape == (1, 5, 3)
    assert pol.hs[0].shape == (1, 5, 16) and not pol.hs[0].requires_grad


@pytest.mark.parametrize("rnn", [False, True])
@pytest.mark.parametrize("kind", ["gauss", "cat", "multi"])
def test_llh_of_sampled_actions_backpropagates_to_the_net(kind, rnn):
    pol = make_pol(kind, rnn)
    _, ac, a_i = pol(random_obs(4, 2) if rnn else random_obs(8))
    pol.pd.llh(ac.detach(), a_i).sum().backward()
    grads = [p.grad for p in pol.net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_numpy_float64_list_and_single_obs_are_accepted():
    pol = make_pol("gauss", False)
    ac_real, _, a_i = pol.deterministic_ac_real(random_obs(5).astype(np.float64))
    assert a_i["mean"].dtype == torch.float32 and ac_real.shape == (5, 3)
    assert pol([[0.0, 0.1, 0.2]])[1].shape == (1, 3)
    assert pol(np.zeros(3))[1].shape == (1, 3)
    assert make_pol("cat", True)(np.zeros(3))[1].shape == (1, 1)


@pytest.mark.parametrize(
    ("cls", "space", "message"),
    [
        (
            GaussianPol,
            gym.spaces.Discrete(2),
            "action_space: GaussianPol needs a gymnasium.spaces.Box, got Discrete(2)",
        ),
        (
            CategoricalPol,
            BOX,
            f"action_space: CategoricalPol needs a gymnasium.spaces.Discrete, got {BOX!r}",
        ),
        (
            MultiCategoricalPol,
            gym.spaces.Discrete(3),
            "action_space: MultiCategoricalPol needs a gymnasium.spaces.MultiDiscrete, "
            "got Discrete(3)",
        ),
    ],
)
def test_wrong_action_space_is_named(cls, space, message):
    net = PolNet(OB_SPACE, space)
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(OB_SPACE, space, net)


def test_construction_errors_name_the_argument():
    two_dim = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^net: GaussianPol .*\(mean \(\.\.\., 3\)"):
        GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, two_dim))
    with pytest.raises(ValueError, match=r"^net: CategoricalPol .*pi \(\.\.\., 4\)"):
        CategoricalPol(OB_SPACE, DISCRETE, PolNet(OB_SPACE, gym.spaces.Discrete(3)))
    with pytest.raises(ValueError, match=r"^net: GaussianPol with rnn=True needs .*init_hs"):
        GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX), rnn=True)
    with pytest.raises(ValueError, match=r"^net: GaussianPol could not call PolNet"):
        GaussianPol(gym.spaces.Box(-1, 1, (5,)), BOX, PolNet(OB_SPACE, BOX))
    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^action_space: .*normalize_ac=False"):
        GaussianPol(OB_SPACE, unbounded, PolNet(OB_SPACE, unbounded))
    # a class without normalize_ac is not told to pass it
    with pytest.raises(ValueError, match=r"TanhGaussianPol squashes actions into the bounds"):
        TanhGaussianPol(OB_SPACE, unbounded, PolNet(OB_SPACE, unbounded))
    with pytest.raises(
        ValueError, match=r"^observation_space: PolNet needs a gymnasium.spaces.Box"
    ):
        PolNet(gym.spaces.Discrete(3), BOX)


def _torch_ac_real(pol, ac):
    """The torch conversion of an action, what the numpy path of forward must reproduce."""
    return pol._real_to_numpy(pol._ac_to_real(ac))


@pytest.mark.parametrize(
    ("kind", "space", "normalize_ac"),
    [
        ("gauss", BOX, True),
        ("gauss", BOX, False),
        ("gauss", gym.spaces.Box(-0.3, 1e3, (3,), dtype=np.float64), True),
        ("cat", DISCRETE, True),
        ("multi", gym.spaces.MultiDiscrete([2, 5, 3], start=[-1, 0, 7]), True),
    ],
)
def test_numpy_action_conversion_equals_torch(kind, space, normalize_ac):
    """forward converts actions in numpy on the CPU: bitwise what the torch path gives."""
    pol = make_pol(kind, False, space)
    pol.normalize_ac = normalize_ac
    gen = torch.Generator().manual_seed(0)
    if kind == "gauss":  # inside and well outside [-1, 1], and the endpoints
        ac = 2.0 * torch.randn(500, 3, generator=gen)
        ac[:2] = torch.tensor([-1.0, 1.0]).unsqueeze(-1)
    else:
        ac = pol.pd.sample(pol.pd_params(random_obs(500)))
    ac_real = pol._ac_real_numpy(ac)
    expected = _torch_ac_real(pol, ac)
    assert ac_real.dtype == expected.dtype == space.dtype and ac_real.shape == expected.shape
    np.testing.assert_array_equal(ac_real, expected)
    assert all(space.contains(a) for a in ac_real)
    # and forward returns it
    torch.manual_seed(1)
    ac_real, ac, _ = pol(random_obs(64))
    np.testing.assert_array_equal(ac_real, _torch_ac_real(pol, ac.detach()))


def test_subclass_overriding_the_conversion_keeps_it():
    class Shifted(CategoricalPol):
        def _ac_to_real(self, ac):
            return super()._ac_to_real(ac) + 10

    torch.manual_seed(0)
    pol = Shifted(OB_SPACE, DISCRETE, PolNet(OB_SPACE, DISCRETE, 16, 16))
    ac_real, ac, _ = pol(random_obs(20))
    np.testing.assert_array_equal(ac_real, ac.numpy() + DISCRETE.start + 10)


def test_device_follows_moves_and_assigned_modules():
    """pol.device is cached; .to() and assigning a module must not leave it stale."""
    pol = make_pol("cat", False)
    assert pol.device == torch.device("cpu")
    pol.to("meta")
    assert pol.device == torch.device("meta")
    pol.to_empty(device="cpu")
    assert pol.device == torch.device("cpu")
    pol.net = PolNet(OB_SPACE, DISCRETE, 16, 16).to("meta")
    assert pol.device == torch.device("meta")
    # tensors replaced inside a submodule, e.g. a meta-device policy loading real weights
    pol.load_state_dict(make_pol("cat", False).state_dict(), assign=True)
    assert pol.device == torch.device("cpu")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_obs_is_rejected(bad):
    pol = make_pol("cat", False)
    obs = random_obs(4)
    obs[2, 1] = bad
    with pytest.raises(ValueError, match=r"^obs: expected finite values, .*\(2, 1\)"):
        pol(obs)
    with pytest.raises(ValueError, match=r"^obs: expected finite values, .*\(2, 1\)"):
        pol(torch.as_tensor(obs).requires_grad_())


def test_wrong_obs_shape_is_rejected():
    with pytest.raises(ValueError, match=r"^obs: GaussianPol expects \(B, \*ob_shape\)"):
        make_pol("gauss", False)(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^h_masks: expected shape \(5, 2\)"):
        make_pol("gauss", True)(random_obs(5, 2), h_masks=np.zeros((5, 3)))


@pytest.mark.parametrize("rnn", [False, True])
def test_random_pol(rnn):
    torch.manual_seed(0)
    lead = (50, 20) if rnn else (1000,)
    half_open = gym.spaces.Box(
        np.array([-1.0, 0.0, -np.inf, -np.inf], dtype=np.float32),
        np.array([1.0, np.inf, 2.0, np.inf], dtype=np.float32),
    )
    for space in (BOX, half_open, DISCRETE, MULTI):
        pol = RandomPol(OB_SPACE, space, rnn=rnn)
        ac_real, ac, a_i = pol(random_obs(*lead))
        assert a_i == {} and ac_real.shape == lead + space.shape and ac.shape == ac_real.shape
        flat = ac_real.reshape(-1, *space.shape)
        assert all(space.contains(x) for x in flat[:200])
        if isinstance(space, gym.spaces.Box):
            assert (flat >= space.low).all() and (flat <= space.high).all()
        else:
            # every value is reached: uniform over the whole range
            low = np.asarray(space.start)
            high = low + (space.n if isinstance(space, gym.spaces.Discrete) else space.nvec) - 1
            assert (flat.min(0) == low).all() and (flat.max(0) == high).all()
        assert pol.hs is None
    pol = RandomPol(OB_SPACE, BOX, rnn=rnn, normalize_ac=True)
    ac_real, ac, _ = pol(random_obs(*lead))
    assert ac.abs().max() <= 1.0
    np.testing.assert_allclose(ac_real, pol.convert_ac_for_real(ac.numpy()))


def _reference_lstm(lstm, xs, hs, h_masks):
    """Obviously-right loop: one step at a time, zeroing the state where a mask is set."""
    h, c = hs
    outs = []
    for t in range(xs.shape[0]):
        keep = 1.0 - h_masks[t].reshape(1, -1, 1)
        out, (h, c) = lstm(xs[t : t + 1], (h * keep, c * keep))
        outs.append(out)
    return torch.cat(outs), (h, c)


@pytest.mark.parametrize("time_steps", [1, 2, 9])
def test_run_lstm_matches_step_by_step_reference(time_steps):
    torch.manual_seed(time_steps)
    lstm = torch.nn.LSTM(4, 5)
    xs = torch.randn(time_steps, 3, 4)
    hs = (torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    h_masks = (torch.rand(time_steps, 3, 1) < 0.3).float()
    out, (h, c) = run_lstm(lstm, xs, hs, h_masks)
    ref_out, (ref_h, ref_c) = _reference_lstm(lstm, xs, hs, h_masks)
    assert_close(out, ref_out)
    assert_close(h, ref_h)
    assert_close(c, ref_c)


def test_pol_net_lstm_outputs_and_init_hs():
    net = PolNetLSTM(OB_SPACE, BOX, h_size=8, cell_size=6)
    h, c = net.init_hs(4)
    assert h.shape == c.shape == (1, 4, 6) and not h.any()
    mean, log_std, (h, c) = net(torch.zeros(7, 4, 3), (h, c), torch.zeros(7, 4, 1))
    assert mean.shape == log_std.shape == (7, 4, 3) and h.shape == (1, 4, 6)
    pi, hs = PolNetLSTM(OB_SPACE, MULTI)(torch.zeros(2, 4, 3), None, None)
    assert pi.shape == (2, 4, 3, 5)
    assert_close(pi.sum(-1), torch.ones(2, 4, 3))
    with pytest.raises(ValueError, match=r"^hs: expected"):
        net(torch.zeros(7, 4, 3), net.init_hs(2), None)


@pytest.mark.parametrize("kwargs", [{}, {"squash_mean": False}, {"sde_sample_freq": 4}])
def test_make_pol_acts_in_the_units_of_an_unbounded_box(kwargs):
    # make_pol told users to pass normalize_ac=False, which it did not take
    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
    torch.manual_seed(0)
    pol = machina_make_pol(OB_SPACE, unbounded, **kwargs)
    assert not pol.normalize_ac
    # and a linear mean: a tanh one would stop at ±1 in the environment's units
    if "sde_sample_freq" not in kwargs:
        with torch.no_grad():
            pol.net.head.mean_layer.weight.fill_(10.0)
        ac_real = pol.deterministic_ac_real(torch.ones(1, *OB_SPACE.shape))[0]
        assert np.abs(ac_real).max() > 5.0
    ac_real, ac, _ = pol(torch.zeros(5, *OB_SPACE.shape))
    assert ac_real.shape == (5, 2) and np.isfinite(ac_real).all()
    assert machina_make_pol(OB_SPACE, BOX).normalize_ac  # bounded: scaled onto the bounds
    with pytest.raises(ValueError, match=r"^action_space: GaussianPol with normalize_ac=True"):
        machina_make_pol(OB_SPACE, unbounded, normalize_ac=True)
    with pytest.raises(ValueError, match=r"^normalize_ac: only a Box"):
        machina_make_pol(OB_SPACE, DISCRETE, normalize_ac=False)


def test_float64_policies_and_value_functions_act_and_train():
    # observations were always cast to float32: every call of a .double() net failed
    import machina.algos.ppo_clip as ppo_clip
    from machina.nets import VNet
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.traj import epi_functional as ef
    from machina.vfuncs import DeterministicSVfunc, make_vf

    env = gym.make("Pendulum-v1")
    pol = machina_make_pol(env.observation_space, env.action_space).double()
    vf = make_vf(env.observation_space).double()
    assert pol.dtype == vf.dtype == torch.float64

    class OwnDtype(DeterministicSVfunc):  # a user's subclass may keep its own attribute
        def __init__(self, *args):
            super().__init__(*args)
            self.dtype = "mine"

    assert OwnDtype(env.observation_space, VNet(env.observation_space)).dtype == "mine"
    epis = EpiSampler(env, pol, seed=0).sample(pol, max_steps=200)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_rets(ef.compute_advs(ef.compute_vs(traj, vf), 0.99, 0.95), 0.99)
    traj.register_epis()
    before = [p.detach().clone() for p in pol.parameters()]
    ppo_clip.train(
        traj,
        pol,
        vf,
        torch.optim.Adam(pol.parameters()),
        torch.optim.Adam(vf.parameters()),
        epoch=1,
        batch_size=64,
    )
    assert any(not torch.equal(a, b) for a, b in zip(before, pol.parameters()))
    assert all(p.dtype == torch.float64 for p in pol.parameters())


def test_integer_box_actions_are_rounded_and_random_ones_uniform():
    # a cast truncated towards 0: -4.75 became -4, and RandomPol drew 0 twice as often
    int_box = gym.spaces.Box(-5, 5, (1,), np.int64)
    pol = GaussianPol(OB_SPACE, int_box, PolNet(OB_SPACE, int_box))
    acs = np.array([[-0.95], [-0.5], [0.0], [0.35], [0.95], [1.0]], np.float32)
    np.testing.assert_array_equal(pol.convert_ac_for_real(acs).ravel(), [-5, -2, 0, 2, 5, 5])
    n = 110_000
    for normalize_ac in (False, True):
        torch.manual_seed(0)
        random_pol = RandomPol(OB_SPACE, int_box, normalize_ac=normalize_ac)
        real, ac, _ = random_pol(np.zeros((n, *OB_SPACE.shape), np.float32))
        counts = np.bincount(real.ravel() + 5, minlength=11)
        # chi-square against uniform on -5..5 (10 degrees of freedom; 0.1% critical value 29.6)
        assert ((counts - n / 11) ** 2 / (n / 11)).sum() < 29.6, counts
        # the recorded (policy-space) actions lie in the space, scaled or not
        bound = 1.0 if normalize_ac else 5.0
        assert ac.abs().max() <= bound


def test_multi_categorical_net_with_probability_on_padding_classes_is_refused():
    # a user's softmax over (k, max(nvec)) classes drew actions outside MultiDiscrete([2, 4])
    space = gym.spaces.MultiDiscrete([2, 4])

    class Unmasked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(OB_SPACE.shape[0], 8)

        def forward(self, obs):
            return torch.softmax(self.linear(obs).reshape(-1, 2, 4), dim=-1)

    with pytest.raises(ValueError, match=r"net: MultiCategoricalPol needs probability 0 on"):
        MultiCategoricalPol(OB_SPACE, space, Unmasked())
    MultiCategoricalPol(OB_SPACE, space, PolNet(OB_SPACE, space))  # its head masks them


def test_bfloat16_box_policies_act_and_sample():
    # numpy has no bfloat16: the action conversion and the sampler's copies of the outputs
    # went through .numpy() on bfloat16 tensors (TypeError)
    from machina.noise import GaussianActionNoise
    from machina.pols import DeterministicActionNoisePol
    from machina.samplers import EpiSampler

    torch.manual_seed(0)
    obs = random_obs(64)
    pol = GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 16, 16)).to(torch.bfloat16)
    noisy = DeterministicActionNoisePol(
        OB_SPACE,
        BOX,
        PolNet(OB_SPACE, BOX, 16, 16, deterministic=True),
        noise=GaussianActionNoise(BOX, std=0.5),
    ).to(torch.bfloat16)
    for p in (pol, noisy):
        for act in (p, p.deterministic_ac_real):
            ac_real, ac, _ = act(obs)
            assert ac.dtype == torch.bfloat16 and ac_real.dtype == BOX.dtype
            assert BOX.contains(ac_real[0]) and np.all(ac_real >= BOX.low)
            assert np.all(ac_real <= BOX.high)
            # the scaling onto [low, high], to bfloat16 rounding: (a few roundings, where
            # the policy converts in bfloat16, of values up to the range)
            a = ac.detach().double().numpy()
            expected = np.clip(BOX.low + (a + 1.0) * 0.5 * (BOX.high - BOX.low), BOX.low, BOX.high)
            atol = 4 * float(torch.finfo(torch.bfloat16).eps) * float(np.max(BOX.high - BOX.low))
            np.testing.assert_allclose(ac_real, expected, rtol=0, atol=atol)
    env = gym.make("Pendulum-v1", max_episode_steps=10)
    torch.manual_seed(0)
    pol = GaussianPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    ).to(torch.bfloat16)
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=1)
    assert len(epis) == 1 and len(epis[0]["rews"]) == 10
    assert epis[0]["a_is"]["mean"].dtype == np.float32 and np.isfinite(epis[0]["acs"]).all()


class _FlippedGaussianPol(GaussianPol):
    """machina 0.x's public hook: the environment's action is convert_ac_for_real's."""

    def convert_ac_for_real(self, x):
        return -super().convert_ac_for_real(x)


class _ActionEchoEnv(gym.Env):
    """Reports the action it was given in its info, so that episodes record it (e_is)."""

    observation_space = OB_SPACE
    action_space = BOX

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self._t += 1
        info = {f"ac{i}": float(a) for i, a in enumerate(np.asarray(action).ravel())}
        return np.full(3, 0.1 * self._t, np.float32), 0.0, self._t >= 5, False, info


def test_an_overriding_convert_ac_for_real_gives_the_environment_action():
    # 0.x's forward and deterministic_ac_real returned self.convert_ac_for_real(ac); export
    # and datasets still call it, so the policy's own acting must not bypass it
    from machina.noise import GaussianActionNoise
    from machina.pols import DeterministicActionNoisePol
    from machina.samplers import EpiSampler

    torch.manual_seed(0)
    obs = random_obs(8)
    pol = _FlippedGaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 16, 16))

    class FlippedNoisy(DeterministicActionNoisePol):
        def convert_ac_for_real(self, x):
            return -super().convert_ac_for_real(x)

    noisy = FlippedNoisy(
        OB_SPACE,
        BOX,
        PolNet(OB_SPACE, BOX, 16, 16, deterministic=True),
        noise=GaussianActionNoise(BOX, std=0.5),
    )

    class FlippedRandom(RandomPol):
        def convert_ac_for_real(self, x):
            return -super().convert_ac_for_real(x)

    rand = FlippedRandom(OB_SPACE, BOX, normalize_ac=True)
    for p in (pol, noisy, rand):
        for act in (p, p.deterministic_ac_real):
            ac_real, ac, _ = act(obs)
            expected = GaussianPol.convert_ac_for_real(p, ac.detach().numpy())
            np.testing.assert_array_equal(ac_real, -expected)
            assert np.any(ac_real != expected)
    # set on an instance of GaussianPol itself: the sampler's numpy copy must not take over
    plain = GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 16, 16))
    assert plain.numpy_inference() is not None
    plain.convert_ac_for_real = lambda x: np.zeros_like(x)
    assert plain.numpy_inference() is None
    np.testing.assert_array_equal(plain(obs)[0], np.zeros((8, 3), np.float32))
    # the sampler (its numpy fast path asked for) steps the environment with the override's
    with EpiSampler(_ActionEchoEnv(), pol, seed=0, fast_inference=True) as sampler:
        epis = sampler.sample(pol, max_steps=5)
    epi = epis[0]
    sent = np.stack([epi["e_is"][f"ac{i}"] for i in range(3)], axis=-1)
    expected = -GaussianPol.convert_ac_for_real(pol, epi["acs"])
    np.testing.assert_allclose(sent, expected, rtol=0, atol=0)


def test_namedtuple_hidden_states_are_kept():
    # detach_hs rebuilt the state with type(hs)(generator), which a NamedTuple refuses
    from typing import NamedTuple

    class State(NamedTuple):
        h: torch.Tensor
        c: torch.Tensor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 8)
            self.mean = torch.nn.Linear(8, 3)
            self.log_std = torch.nn.Parameter(torch.zeros(3))

        def init_hs(self, batch_size=1):
            return State(torch.zeros(1, batch_size, 8), torch.zeros(1, batch_size, 8))

        def forward(self, obs, hs, h_masks):
            keep = 1.0 - h_masks
            out, (h, c) = self.lstm(obs, (hs.h * keep[:1], hs.c * keep[:1]))
            mean = torch.tanh(self.mean(out))
            return mean, self.log_std.expand_as(mean), State(h, c)

    torch.manual_seed(0)
    pol = GaussianPol(OB_SPACE, BOX, Net(), rnn=True)
    ac_real, _, _ = pol(random_obs(4, 2))
    assert ac_real.shape == (4, 2, 3)
    assert type(pol.hs) is State and not pol.hs.h.requires_grad
    pol(random_obs(1, 2))  # continues from the stored state
    from machina.utils.recurrent import detach_hs, map_hs

    state = State(torch.ones(2, requires_grad=True), torch.zeros(2))
    nested = [state, (state.h,)]
    detached = detach_hs(nested)
    assert type(detached) is list and type(detached[0]) is State
    assert type(detached[1]) is tuple and not detached[0].h.requires_grad
    doubled = map_hs(state, lambda t: 2 * t)
    assert type(doubled) is State and torch.equal(doubled.h, 2 * state.h)


def test_categorical_net_giving_logits_is_refused():
    # a net without softmax was accepted and its argmax, llh and entropy silently wrong
    torch.manual_seed(0)
    space = gym.spaces.Discrete(4)
    logits = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"net: CategoricalPol needs a net returning prob.*logits"):
        CategoricalPol(OB_SPACE, space, logits)

    class Halved(torch.nn.Module):  # non-negative, each row summing to 1/2
        def forward(self, obs):
            return torch.full((*obs.shape[:-1], 4), 0.125)

    with pytest.raises(ValueError, match=r"net: CategoricalPol .* summing to 1"):
        CategoricalPol(OB_SPACE, space, Halved())
    multi = gym.spaces.MultiDiscrete([2, 2])

    class MultiLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, obs):
            return self.fc(obs).reshape(*obs.shape[:-1], 2, 2)

    with pytest.raises(ValueError, match=r"net: MultiCategoricalPol needs a net returning prob"):
        MultiCategoricalPol(OB_SPACE, multi, MultiLogits())
    # softmax outputs pass, over many classes of very different probabilities too
    wide = gym.spaces.Discrete(1000)
    net = torch.nn.Sequential(torch.nn.Linear(3, 1000), torch.nn.Softmax(dim=-1))
    with torch.no_grad():
        net[0].bias.copy_(torch.randn(1000) * 10)
    CategoricalPol(OB_SPACE, wide, net)
    CategoricalPol(OB_SPACE, space, PolNet(OB_SPACE, space))
