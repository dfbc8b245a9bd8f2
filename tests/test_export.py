"""Exported policy actions (ONNX in onnxruntime, TorchScript, torch.export) against the policy."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.export import ActionModule, export_pol, load_exported, noise_shape
from machina.nets.mixture import MixturePolNet
from machina.nets.mlp import PolNet, SDEPolNet
from machina.noise import GaussianActionNoise
from machina.pols import (
    CategoricalPol,
    DeterministicActionNoisePol,
    GaussianPol,
    GaussianSDEPol,
    MixtureGaussianPol,
    MultiCategoricalPol,
    TanhGaussianPol,
    TanhGaussianSDEPol,
)
from machina.pols.base import BasePol

OB_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 5.0], np.float32))
BATCH = 7
# float32 through three small layers, tanh and the scaling: a few ulps of the result, which is
# at most max(|low|, |high|) = 5 in BOX; 1e-5 relative leaves ~80 ulps of room.
RTOL, ATOL = 1e-5, 1e-5 * 5.0


def make_pol(kind: str) -> BasePol:
    torch.manual_seed(0)
    if kind == "gaussian":
        return GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 8, 8))
    if kind == "gaussian_float64":
        space = gym.spaces.Box(-np.ones(2), 3.0 * np.ones(2), dtype=np.float64)
        return GaussianPol(OB_SPACE, space, PolNet(OB_SPACE, space, 8, 8))
    if kind == "gaussian_sde":
        pol = GaussianSDEPol(OB_SPACE, BOX, SDEPolNet(OB_SPACE, BOX, 8, 8), log_std_init=-0.5)
        with torch.no_grad():  # a mean that is not ~0 (SDEPolNet's output gain is 0.01)
            pol.net.mean_layer.weight.mul_(100.0)
        return pol
    if kind == "tanh_gaussian_sde":  # means inside (dim 1) and beyond (dim 0) the clamp at 2
        pol = TanhGaussianSDEPol(OB_SPACE, BOX, SDEPolNet(OB_SPACE, BOX, 8, 8), log_std_init=-0.5)
        with torch.no_grad():
            pol.net.mean_layer.weight.mul_(100.0)
            pol.net.mean_layer.bias.copy_(torch.tensor([3.5, 0.0]))
        return pol
    if kind == "tanh_gaussian":
        return TanhGaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 8, 8))
    if kind == "mixture":
        return MixtureGaussianPol(OB_SPACE, BOX, MixturePolNet(OB_SPACE, BOX, 3, 8, 8))
    if kind == "deterministic":
        net = PolNet(OB_SPACE, BOX, 8, 8, deterministic=True)
        return DeterministicActionNoisePol(OB_SPACE, BOX, net, noise=GaussianActionNoise(BOX, 0.5))
    if kind == "categorical":
        space = gym.spaces.Discrete(4, start=2)
        return CategoricalPol(OB_SPACE, space, PolNet(OB_SPACE, space, 8, 8))
    if kind == "multi_categorical":
        space = gym.spaces.MultiDiscrete([3, 2, 4], start=[1, 0, -1])
        return MultiCategoricalPol(OB_SPACE, space, PolNet(OB_SPACE, space, 8, 8))
    if kind == "gaussian_int_box":  # actions rounded to the nearest integer, as the policy's
        space = gym.spaces.Box(-3, 4, (2,), dtype=np.int64)
        return GaussianPol(OB_SPACE, space, PolNet(OB_SPACE, space, 8, 8))
    if kind == "gaussian_double_net":  # float32 inputs, a float64 net
        return GaussianPol(OB_SPACE, BOX, PolNet(OB_SPACE, BOX, 8, 8)).double()
    raise AssertionError(kind)


KINDS = [
    "gaussian",
    "gaussian_float64",
    "gaussian_int_box",
    "gaussian_double_net",
    "gaussian_sde",
    "tanh_gaussian_sde",
    "tanh_gaussian",
    "mixture",
    "deterministic",
    "categorical",
    "multi_categorical",
]


def observations(seed: int = 1) -> np.ndarray:
    # beyond the space's bounds too: the policy does not clip observations
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(BATCH, 3)).astype(np.float32)


def policy_noise(pol: BasePol, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """The policy's own sampled action under ``seed``, and the noise that the same RNG calls
    draw, in ActionModule's layout (the pds' draws: uniform_ on (B, ..., 1), then randn)."""
    obs = observations()
    if isinstance(pol, GaussianSDEPol):
        # a stochastic export draws from the per-state marginal (its exploration matrix is a
        # sampling loop's): the reference is that Gaussian of the public pd_params
        noise = torch.randn(BATCH, 2, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            params = pol.pd_params(obs)
            if isinstance(pol, TanhGaussianSDEPol):  # the marginal before the squash
                loc = torch.atanh(params["mean"].double())
                ac = torch.tanh(loc + torch.exp(params["log_std"].double()) * noise).float()
            else:
                ac = params["mean"] + torch.exp(params["log_std"]) * noise
        return pol._ac_real_numpy(ac), noise
    torch.manual_seed(seed)
    ac_real = pol(obs)[0]
    torch.manual_seed(seed)
    if isinstance(pol, DeterministicActionNoisePol):
        noise = pol.noise((BATCH,))
    elif isinstance(pol, GaussianPol):
        noise = torch.randn(BATCH, 2)
    elif isinstance(pol, CategoricalPol):
        noise = torch.empty(BATCH, 1).uniform_()
    elif isinstance(pol, MultiCategoricalPol):
        noise = torch.empty(BATCH, 3, 1).uniform_()[..., 0]
    else:  # mixture: the component's uniform draw, then the Gaussian draw
        uniform = torch.empty(BATCH, 1).uniform_()
        noise = torch.cat([uniform, torch.randn(BATCH, 2)], dim=-1)
    assert tuple(noise.shape[1:]) == noise_shape(pol)
    return ac_real, noise


def assert_actions_equal(pol: BasePol, got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype == pol.action_space.dtype
    assert got.shape == want.shape
    if isinstance(pol.action_space, gym.spaces.Box):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        assert np.all(got >= pol.action_space.low) and np.all(got <= pol.action_space.high)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_action_module_is_the_policy(kind):
    """In torch, the module reproduces the policy's deterministic and sampled actions."""
    pol = make_pol(kind)
    obs = observations()
    with torch.no_grad():
        det = ActionModule(pol)(torch.from_numpy(obs)).numpy()
    assert_actions_equal(pol, det, pol.deterministic_ac_real(obs)[0])
    want, noise = policy_noise(pol, seed=3)
    with torch.no_grad():
        got = ActionModule(pol, deterministic=False)(torch.from_numpy(obs), noise).numpy()
    assert_actions_equal(pol, got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_in_onnxruntime_matches_policy(kind, tmp_path):
    """The ONNX files (deterministic and stochastic) run in onnxruntime give the policy's
    actions on the same observations, for a batch size other than the traced one."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    pol = make_pol(kind)
    obs = observations()
    path = export_pol(pol, tmp_path / "det.onnx", format="onnx")
    sess = load_exported(path, "onnx")
    assert [i.name for i in sess.get_inputs()] == ["obs"]
    got = sess.run(None, {"obs": obs})[0]
    assert_actions_equal(pol, got, pol.deterministic_ac_real(obs)[0])

    path = export_pol(pol, tmp_path / "sto.onnx", format="onnx", deterministic=False)
    want, noise = policy_noise(pol, seed=4)
    got = load_exported(path, "onnx").run(None, {"obs": obs, "noise": noise.numpy()})[0]
    assert_actions_equal(pol, got, want)


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_torch_formats_load_back(kind, fmt, tmp_path):
    pol = make_pol(kind)
    obs = observations()
    suffix = ".pt" if fmt == "torchscript" else ".pt2"
    path = export_pol(pol, tmp_path / f"det{suffix}", format=fmt, example_obs=obs[:1])
    with torch.no_grad():
        got = load_exported(path, fmt)(torch.from_numpy(obs)).numpy()
    assert_actions_equal(pol, got, pol.deterministic_ac_real(obs)[0])

    path = export_pol(pol, tmp_path / f"sto{suffix}", format=fmt, deterministic=False)
    want, noise = policy_noise(pol, seed=5)
    with torch.no_grad():
        got = load_exported(path, fmt)(torch.from_numpy(obs), noise).numpy()
    assert_actions_equal(pol, got, want)


@pytest.mark.parametrize("training", [True, False])
def test_export_is_one_file_and_leaves_the_policy_as_it_was(training, tmp_path):
    pol = make_pol("gaussian")
    pol.train(training)
    export_pol(pol, tmp_path / "pol.pt2", format="torch.export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pol.pt2"]
    assert all(m.training == training for m in pol.modules())
    pol(observations())  # still acts


def test_bad_arguments_name_themselves(tmp_path):
    pol = make_pol("gaussian")
    with pytest.raises(ValueError, match="format"):
        export_pol(pol, tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="example_obs"):
        export_pol(pol, tmp_path / "x.pt", format="torchscript", example_obs=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="pol: export supports"):
        export_pol(torch.nn.Linear(2, 2), tmp_path / "x.pt", format="torchscript")
    with pytest.raises(ValueError, match="noise"):
        ActionModule(pol, deterministic=False)(torch.zeros(2, 3))
