"""Scripts in machina 0.x's style: its keyword names, the rest of its logger module (from
rllab), ``trpo.linesearch`` and ``mpc.train_dm(target=..., td=...)`` (issue 14).

Tiny nets and hand-made batches; no sampling.
"""

import argparse
import csv
import enum
import json
import os
import pickle

import gymnasium as gym
import joblib
import numpy as np
import pytest
import torch
import torch.nn as nn

from machina import logger
from machina import loss_functional as lf
from machina.algos import diayn_sac, mpc, trpo
from machina.envs import SkillEnv
from machina.logger import console, snapshot
from machina.models import DeterministicSModel
from machina.pds import MixtureGaussianPd, MultiCategoricalPd
from machina.pols import GaussianPol
from machina.traj import Traj
from machina.utils import keyword_aliases

PENDULUM_OB = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_AC = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


class PolNet(nn.Module):
    def __init__(self, h=8):
        super().__init__()
        self.fc = nn.Linear(3, h)
        self.mean = nn.Linear(h, 1)
        self.log_std = nn.Parameter(torch.full((1,), -0.5))

    def forward(self, ob):
        return torch.tanh(self.mean(torch.relu(self.fc(ob)))), self.log_std.expand(len(ob), 1)


@pytest.fixture
def fresh_logger(tmp_path):
    """The module-level functions write to a Logger of this test, restored afterwards."""
    previous = logger.set_logger(logger.Logger())
    yield tmp_path
    logger.get_logger().close()
    logger.set_logger(previous)
    logger.set_log_tabular_only(False)


# ------------------------------------------------------------------------- keyword names
def test_logger_functions_take_the_original_keyword_names(fresh_logger, capsys):
    log_dir = str(fresh_logger)
    score_file = os.path.join(log_dir, "progress.csv")
    text_file = os.path.join(log_dir, "log.txt")
    logger.add_tabular_output(file_name=score_file)
    logger.add_text_output(file_name=text_file)
    logger.add_tensorboard_output(logdir=log_dir)
    logger.log(s="hello")
    with logger.prefix(key="[pre] "):
        logger.log("inside")
    with logger.tabular_prefix(key="train/"):
        logger.record_tabular("Loss", val=0.5)
    logger.push_tabular_prefix(key="eval/")
    logger.record_tabular(key="Return", val=1.0)
    logger.pop_tabular_prefix()
    row = logger.dump_tabular(write_header=True, with_prefix=False, with_timestamp=False)
    assert row == {"train/Loss": 0.5, "eval/Return": 1.0}
    logger.remove_tabular_output(file_name=score_file)
    logger.remove_text_output(file_name=text_file)
    with open(score_file) as f:
        assert list(csv.DictReader(f)) == [{"train/Loss": "0.5", "eval/Return": "1.0"}]
    with open(text_file) as f:
        text = f.read()
    assert "hello" in text and "[pre] inside" in text
    with pytest.raises(TypeError, match="got both value= and val="):
        logger.record_tabular("Loss", 0.5, val=0.5, value=0.5)
    assert logger.record_tabular.__keyword_aliases__ == {"val": "value"}


def test_policy_pd_env_and_reward_keywords_of_the_original():
    torch.manual_seed(0)
    pol = GaussianPol(PENDULUM_OB, PENDULUM_AC, PolNet())
    obs = torch.randn(4, 3)
    ac_real, ac, a_i = pol(ob=obs)
    assert ac_real.shape == (4, 1)
    np.testing.assert_array_equal(
        pol.convert_ac_for_real(x=ac.detach().numpy()),
        pol.convert_ac_for_real(ac.detach().numpy()),
    )
    pd = MultiCategoricalPd()
    pi = torch.softmax(torch.randn(5, 2, 3), -1)
    xs = torch.randint(0, 3, (5, 2))
    torch.testing.assert_close(pd.llh(xs=xs, params=dict(pi=pi)), pd.llh(xs, dict(pi=pi)))
    # 0.x's parameter key "pis", in every method
    q = torch.softmax(torch.randn(5, 2, 3), -1)
    torch.testing.assert_close(pd.llh(xs, dict(pis=pi)), pd.llh(xs, dict(pi=pi)))
    torch.testing.assert_close(pd.ent(dict(pis=pi)), pd.ent(dict(pi=pi)))
    torch.testing.assert_close(
        pd.kl_pq(dict(pis=pi), dict(pis=q)), pd.kl_pq(dict(pi=pi), dict(pi=q))
    )
    assert pd.sample(dict(pis=pi)).shape == (5, 2)
    MixtureGaussianPd(PENDULUM_OB, PENDULUM_AC)  # 0.x's constructor took the spaces

    env = SkillEnv(gym.make("Pendulum-v1"), num_skill=3)
    env.reset(seed=0)
    obs_skill, *_ = env.step(ac=np.zeros(1, np.float32))
    assert obs_skill.shape == (6,)
    discrim = nn.Linear(3, 3)
    rews, info = diayn_sac.calc_rewards(
        obskill=torch.as_tensor(obs_skill)[None], num_skill=3, discrim=discrim
    )
    assert rews.shape == (1,) and int(info["skill"][0]) == env.skill


def test_keyword_aliases_refuse_unknown_targets_and_shadowing():
    with pytest.raises(TypeError, match="has no parameter 'value'"):
        keyword_aliases(val="value")(lambda key, v: None)
    with pytest.raises(TypeError, match="'v' is already a parameter"):
        keyword_aliases(v="value")(lambda v, value: None)


def test_lf_sac_shows_the_function_signature_and_utils_names():
    import inspect

    params = list(inspect.signature(lf.sac).parameters)
    assert params[:6] == ["pol", "qfs", "targ_qfs", "log_alpha", "batch", "gamma"]
    assert "burn_in_length" in inspect.signature(lf.r2d2_sac).parameters
    assert lf.get_device() == torch.device("cpu")
    assert set(lf.detach_tensor_dict({"a": torch.ones(1, requires_grad=True)})) == {"a"}


# ---------------------------------------------------------------------- trpo.linesearch
def _pg_batch():
    torch.manual_seed(1)
    pol = GaussianPol(PENDULUM_OB, PENDULUM_AC, PolNet())
    obs = torch.randn(64, 3)
    with torch.no_grad():
        _, acs, a_i = pol(obs)
    batch = dict(obs=obs, acs=acs, advs=torch.randn(64), **a_i)
    return pol, batch


def test_linesearch_accepts_a_descent_step_and_restores_after_an_ascent():
    pol, batch = _pg_batch()
    params = list(pol.parameters())
    x = torch.nn.utils.parameters_to_vector(params).detach()
    grad = torch.nn.utils.parameters_to_vector(torch.autograd.grad(lf.pg(pol, batch), params))
    step = -0.1 * grad
    expected = float(-(grad @ step))  # linear prediction of the decrease
    before = float(lf.pg(pol, batch).detach())
    success, new_x = trpo.linesearch(pol, batch, lf.pg, x, step, expected)
    assert success
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(params).detach(), new_x)
    assert float(lf.pg(pol, batch).detach()) < before

    success, same_x = trpo.linesearch(pol, batch, lf.pg, new_x, -step, -expected, 3)
    assert not success and same_x is new_x
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(params).detach(), new_x)


# --------------------------------------------------------- mpc.train_dm target and td
class RewNet(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.fc = nn.Linear(4, out)

    def forward(self, ob, ac):
        return self.fc(torch.cat([ob, ac], -1))


def _model_traj(n=3, t=20):
    rng = np.random.default_rng(0)
    epis = []
    for _ in range(n):
        obs = rng.standard_normal((t + 1, 3)).astype(np.float32)
        acs = rng.uniform(-2, 2, (t, 1)).astype(np.float32)
        epis.append(
            dict(
                obs=obs[:-1],
                next_obs=obs[1:],
                acs=acs,
                rews=-(obs[:-1] ** 2).sum(-1).astype(np.float32),
                dones=np.eye(t, dtype=np.float32)[-1],
            )
        )
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    return traj


@pytest.mark.parametrize("td", [True, False])
def test_train_dm_on_next_obs_with_and_without_td(td):
    torch.manual_seed(0)
    traj = _model_traj()
    dm = DeterministicSModel(PENDULUM_OB, PENDULUM_AC, RewNet(3))
    optim = torch.optim.Adam(dm.parameters(), 1e-2)
    losses = mpc.train_dm(traj, dm, optim, 30, 32, "next_obs", td, log_enable=False)
    losses = losses["DynModelLoss"]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_train_dm_on_rewards_needs_a_model_of_their_shape():
    torch.manual_seed(0)
    traj = _model_traj()
    bad = DeterministicSModel(PENDULUM_OB, PENDULUM_AC, RewNet(3))
    with pytest.raises(ValueError, match="target: the model predicts shape"):
        mpc.train_dm(traj, bad, torch.optim.Adam(bad.parameters()), 1, 8, "rews", False, 1, False)
    with pytest.raises(KeyError, match="traj has no 'costs'"):
        mpc.train_dm(traj, bad, None, 1, 8, target="costs", log_enable=False)


# ---------------------------------------------------------------- rest of 0.x's logger
def test_tabulate_formats():
    rows = [["Loss", 0.5], ["Step", 10]]
    assert logger.tabulate(rows, ["key", "value"]) == (
        "key   value\n----  -----\nLoss    0.5\nStep   10"
    )
    assert logger.tabulate(rows, ["key", "value"], tablefmt="pipe").splitlines()[1] == (
        "|------|-------|"
    )
    grid = logger.tabulate({"a": [1, 2.5], "b": ["x", "yy"]}, headers="keys", tablefmt="grid")
    assert grid.splitlines()[0] == "+-----+----+" and grid.count("\n") == 6
    tsv = logger.simple_separated_format("\t")
    assert logger.tabulate([["foo", 1], ["spam", 23]], tablefmt=tsv) == "foo \t 1\nspam\t23"
    assert "grid" in logger.tabulate_formats
    with pytest.raises(ValueError, match="tablefmt: expected one of"):
        logger.tabulate(rows, tablefmt="latex")


def test_csv2table_table_printer_and_plots(tmp_path, capsys):
    score_file = tmp_path / "progress.csv"
    score_file.write_text(
        "TotalStep,RewardAverage,RewardStd,PolLossAverage,PolLossStd\n"
        "10,1.0,0.5,0.3,0.1\n20,2.0,0.4,0.2,0.1\n"
    )
    path = logger.csv2table(str(score_file))
    with open(path) as f:
        assert f.readline().startswith("| TotalStep | RewardAverage")
    printer = logger.TerminalTablePrinter()
    printer.print_tabular([("a", 1), ("b", 2)])
    printer.print_tabular([("a", 3), ("b", 4)])
    assert capsys.readouterr().out.rstrip().endswith("1  2\n3  4")
    with pytest.raises(ValueError, match="expected 2 entries"):
        printer.print_tabular([("a", 1)])
    png = logger.plot_scores(str(score_file), "Reward", "TotalStep", title="t")
    assert png == str(tmp_path / "Reward.png") and os.path.getsize(png) > 0
    pngs = logger.async_plot_scores(str(score_file), "t", {"PolLoss": [0.2]}, [1.0])
    assert sorted(os.path.basename(p) for p in pngs) == ["PolLoss.png", "Reward.png"]


def test_snapshots_follow_dir_mode_and_gap(tmp_path):
    saved = (snapshot.get_snapshot_dir(), snapshot.get_snapshot_mode(), snapshot.get_snapshot_gap())
    try:
        assert logger.save_itr_params(0, {"w": 1}) is None  # no directory: off
        logger.set_snapshot_dir(tmp_path)
        assert os.path.basename(logger.save_itr_params(3, {"w": 3})) == "itr_3.pkl"
        assert joblib.load(tmp_path / "itr_3.pkl") == {"w": 3}
        logger.set_snapshot_mode("last")
        logger.save_itr_params(4, {"w": 4})
        assert joblib.load(tmp_path / "params.pkl") == {"w": 4}
        logger.set_snapshot_mode("gap")
        logger.set_snapshot_gap(2)
        assert logger.save_itr_params(5, 5) is None and logger.save_itr_params(6, 6)
        logger.set_snapshot_mode("none")
        assert logger.save_itr_params(8, 8) is None
        with pytest.raises(ValueError, match="mode: expected one of"):
            logger.set_snapshot_mode("every")
    finally:
        logger.set_snapshot_dir(saved[0])
        logger.set_snapshot_mode(saved[1])
        logger.set_snapshot_gap(saved[2])


class Color(enum.Enum):
    RED = 1


class Algo:
    def __init__(self, lr=0.1, gamma=0.99):
        self.lr, self.gamma = lr, gamma


def test_parameters_written_as_json(tmp_path):
    args = argparse.Namespace(env_name="Pendulum-v1", lr=0.1, algo="Algo", algo_gamma=0.9)
    logger.log_parameters_lite(str(tmp_path / "a" / "args.json"), args)
    assert json.loads((tmp_path / "a" / "args.json").read_text())["env_name"] == "Pendulum-v1"
    logger.log_parameters(str(tmp_path / "p.json"), args, {"algo": Algo})
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["algo"] == {"lr": 0.1, "_name": "Algo"} and "algo_gamma" not in written
    logger.log_variant(str(tmp_path / "v.json"), {"cls": Algo, "color": Color.RED, "n": [1, 2]})
    variant = json.loads((tmp_path / "v.json").read_text())
    assert variant["cls"].endswith(".Algo") and variant["n"] == [1, 2]
    assert variant["color"] == {"$enum": f"{__name__}.Color.RED"}


def test_console_helpers(tmp_path, monkeypatch, capsys):
    with logger.Message("outer"), logger.Message("inner"):
        assert console.MESSAGE_DEPTH == 2
    with logger.SimpleMessage("loading"):
        pass
    out = capsys.readouterr().out
    assert "=: outer" in out and "\t=: inner" in out and "done in" in out
    lines = []
    logger.prefix_log("[x] ", lines.append)("hi")
    assert lines == ["[x] hi"]
    tee = logger.tee_log(str(tmp_path / "tee.txt"))
    tee("line")
    assert (tmp_path / "tee.txt").read_text() == "line\n"

    def train(lr=0.1, epochs=3, name=None):
        return lr, epochs, name

    monkeypatch.setattr(
        "sys.argv",
        ["run.py", "--batch-size", "64", "--train-lr", "0.5", "--train-name", "z"],
    )
    assert logger.collect_args()["batch-size"] == "64"
    assert logger.tweakval(32, "batch_size") == 64 and logger.tweak(32, "other") == 32
    with pytest.raises(ValueError, match="from its default None"):
        logger.tweakfun(train)
    tweaked = logger.tweak(logger.type_hint("name", str)(train))
    assert tweaked(epochs=1) == (0.5, 1, "z")

    answers = iter(["maybe", "", "n"])
    monkeypatch.setattr("builtins.input", lambda: next(answers))
    assert logger.query_yes_no("go?") is True and logger.query_yes_no("go?") is False


def test_log_tabular_only_and_write_to_tensorboard(fresh_logger, capsys):
    logger.set_log_tabular_only(True)
    logger.log("silenced")
    assert logger.get_log_tabular_only() and "silenced" not in capsys.readouterr().out
    logger.set_log_tabular_only(False)
    logger.add_tensorboard_output(str(fresh_logger))
    logger.write_to_tensorboard({"Loss": 0.25})
    logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(fresh_logger))
    events.Reload()
    assert [e.value for e in events.Scalars("Loss")] == [0.25]


def test_snapshot_falls_back_to_pickle_without_joblib(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_joblib(name, *args, **kwargs):
        if name == "joblib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    saved = snapshot.get_snapshot_dir()
    monkeypatch.setattr(builtins, "__import__", no_joblib)
    try:
        logger.set_snapshot_dir(tmp_path)
        path = logger.save_itr_params(1, {"w": 1})
    finally:
        logger.set_snapshot_dir(saved)
    with open(path, "rb") as f:
        assert pickle.load(f) == {"w": 1}
