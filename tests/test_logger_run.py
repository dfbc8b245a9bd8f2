"""logger.Run: evaluation schedule, budget, solved/done status, rows, saved models, units,
checkpoints, and a resumed run equal bit for bit to an uninterrupted one."""

import csv
import string
import subprocess

import numpy as np
import pytest
import torch
from conftest import example_cmd, run_example, run_python

from machina import logger
from machina.logger import run as run_module


@pytest.fixture(autouse=True)
def keep_default_logger():
    """Run installs its own default logger; give the previous one back after each test."""
    previous = logger.get_logger()
    yield
    logger.set_logger(previous)


def epis_of(*lengths, rew=1.0):
    """Episodes of the given lengths, each step paying ``rew``."""
    return [dict(rews=np.full(n, rew, dtype=np.float32)) for n in lengths]


def rows_of(log_dir):
    with open(log_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


class Evaluator:
    """An ``evaluate`` callable that counts its calls and returns episodes of return ``ret``."""

    def __init__(self, ret=0.0):
        self.calls, self.ret = [], ret

    def __call__(self):
        self.calls.append(self.ret)
        return epis_of(10, rew=self.ret / 10)


def test_evaluates_at_each_interval_and_at_the_end(tmp_path, capsys):
    evaluate = Evaluator(ret=-5.0)
    run = logger.Run(tmp_path, max_steps=1000, desc="task", eval_interval=300)
    totals = []
    with run:
        while not run.done:
            run.record(epis_of(60, 40), {"Loss": [1.0, 2.0]}, evaluate=evaluate)
            totals.append(run.total_step)
    assert totals == [100 * i for i in range(1, 11)]
    rows = rows_of(tmp_path)
    assert [int(r["TotalStep"]) for r in rows] == totals
    evaluated = [int(r["TotalStep"]) for r in rows if r["EvalReturn"] != ""]
    # the first iteration at or past each multiple of 300, and the last one
    assert evaluated == [300, 600, 900, 1000]
    assert len(evaluate.calls) == 4
    assert all(float(r["RewardAverage"]) == 50.0 and r["EpisodePerIter"] == "2" for r in rows)
    assert float(rows[0]["LossAverage"]) == 1.5
    assert run.total_epi == 20 and run.total_iter == 10
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "task: done after 1000 steps (eval return -5.0);"
    assert out[-1] == f"run folder: {tmp_path}"
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_without_interval_every_iteration_is_evaluated(tmp_path):
    evaluate = Evaluator()
    with logger.Run(tmp_path, max_steps=300, desc="task") as run:
        while not run.done:
            run.record(epis_of(100), {}, evaluate=evaluate)
    assert len(evaluate.calls) == 3
    assert all(r["EvalReturn"] != "" for r in rows_of(tmp_path))


def test_solved_stops_the_run_and_says_so(tmp_path, capsys):
    evaluate = Evaluator()
    with logger.Run(tmp_path, 10_000, "task", eval_interval=100, solve_return=3.0) as run:
        while not run.done:
            evaluate.ret += 1.0
            run.record(epis_of(100), {}, evaluate=evaluate)
    assert run.solved and run.total_step == 300 and run.eval_return == 3.0
    assert (
        capsys.readouterr().out.splitlines()[-2]
        == "task: solved after 300 steps (eval return 3.0);"
    )


def test_budget_spent_before_solving_says_not_solved(tmp_path, capsys):
    with logger.Run(tmp_path, 200, "task", solve_return=100.0) as run:
        while not run.done:
            run.record(epis_of(100), {}, evaluate=Evaluator(ret=1.0))
    assert not run.solved
    assert "task: not solved after 200 steps (eval return 1.0);" in capsys.readouterr().out


def test_without_evaluation_the_status_gives_the_training_return(tmp_path, capsys):
    with logger.Run(tmp_path, 100, "task") as run:
        run.record(epis_of(50, 50, rew=2.0), {}, num_step=100)
    assert "task: done after 100 steps (train return 100.0);" in capsys.readouterr().out
    assert not (tmp_path / "ckpt-000000").exists()  # nothing asked for a checkpoint


def test_models_are_saved_each_iteration(tmp_path):
    lin = torch.nn.Linear(3, 2)
    log_alpha = torch.tensor(0.5, requires_grad=True)
    with logger.Run(tmp_path, 100, "task") as run:
        run.record(epis_of(100), {}, models=dict(pol=lin, log_alpha=log_alpha))
    state = torch.load(tmp_path / "models" / "pol_last.pt")
    assert torch.equal(state["weight"], lin.weight) and torch.equal(state["bias"], lin.bias)
    assert float(torch.load(tmp_path / "models" / "log_alpha_last.pt")) == 0.5


def test_episode_unit_counts_episodes(tmp_path, capsys):
    evaluate = Evaluator()
    with logger.Run(tmp_path, 6, "task", eval_interval=4, unit="episode") as run:
        while not run.done:
            run.record(epis_of(10, 10), {}, evaluate=evaluate)
    assert run.total_epi == 6 and run.total_step == 60 and len(evaluate.calls) == 2
    assert "task: done after 6 episodes, 60 steps" in capsys.readouterr().out


def test_iterations_without_episodes_plot_the_evaluation(tmp_path, capsys):
    """Behaviour cloning: epochs over saved data, no episodes sampled for training."""
    evaluate = Evaluator(ret=7.0)
    with logger.Run(tmp_path, 5, "bc", eval_interval=2, unit="iteration") as run:
        while not run.done:
            run.record([], {"Loss": [0.5]}, evaluate=evaluate, num_step=30)
    rows = rows_of(tmp_path)
    assert [int(r["TotalStep"]) for r in rows] == [30, 60, 90, 120, 150]
    assert [r["EvalReturn"] != "" for r in rows] == [False, True, False, True, True]
    assert "RewardAverage" not in rows[0]
    assert (tmp_path / "learning_curve.png").stat().st_size > 0
    assert "bc: done after 5 iterations, 150 steps (eval return 7.0);" in capsys.readouterr().out


def test_an_evaluation_may_return_named_numbers(tmp_path):
    with logger.Run(tmp_path, 200, "task", eval_interval=200) as run:
        while not run.done:
            run.record(epis_of(100), {}, evaluate=lambda: {"EvalAccuracy": 0.75})
    assert run.evaluation == {"EvalAccuracy": 0.75} and run.eval_return == -np.inf
    rows = rows_of(tmp_path)
    assert [r["EvalAccuracy"] for r in rows] == ["", "0.75"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(unit="epoch"), "unit: expected one of"),
        (dict(eval_interval=0), "eval_interval: expected a positive int or None, given 0"),
        (dict(checkpoint_interval=1.5), "checkpoint_interval: expected a positive int"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        logger.Run(tmp_path, 10, "task", **kwargs)


@pytest.mark.parametrize("max_steps", [0, -5, 2.5, "10"])
def test_a_budget_that_is_not_a_positive_whole_number_is_named(tmp_path, max_steps):
    # every example "ran" a budget of 0 or -5 and reported "not solved after 0 steps"
    with pytest.raises(ValueError, match="max_steps: expected a positive whole budget of steps"):
        logger.Run(tmp_path, max_steps, "task")


def test_resume_restores_counters_and_cuts_rows_written_after_the_checkpoint(tmp_path):
    lin = torch.nn.Linear(2, 2)
    with logger.Run(tmp_path, 4, "task", unit="iteration", checkpoint_interval=2) as run:
        for i in range(3):  # stopped after the third iteration, before the fourth
            with torch.no_grad():
                lin.weight.fill_(float(i))
            run.record(epis_of(10), {"It": i}, evaluate=Evaluator(), checkpoint=dict(lin=lin))
    assert len(rows_of(tmp_path)) == 3  # the checkpoint holds two of them

    with torch.no_grad():
        lin.weight.fill_(-1.0)
    run = logger.Run(tmp_path, 4, "task", unit="iteration", checkpoint_interval=2, resume=True)
    with run:
        assert run.restore(lin=lin)
        assert run.total_iter == 2 and run.total_step == 20 and run.eval_return == 0.0
        assert torch.equal(lin.weight, torch.ones(2, 2))
        assert [r["It"] for r in rows_of(tmp_path)] == ["0", "1"]
        while not run.done:
            run.record(epis_of(10), {"It": 10 + run.total_iter}, checkpoint=dict(lin=lin))
    rows = rows_of(tmp_path)
    assert [r["It"] for r in rows] == ["0", "1", "12", "13"]
    assert [int(r["TotalStep"]) for r in rows] == [10, 20, 30, 40]
    # TensorBoard too: the third iteration's row (step 30, It 2) was dropped, not doubled
    assert scalars_of(tmp_path, "It") == [(10, 0.0), (20, 1.0), (30, 12.0), (40, 13.0)]


def test_a_checkpoint_interval_changed_on_resume_takes_effect_at_once(tmp_path):
    """checkpoint_interval may change on resume: a run started with 100 iterations between
    checkpoints and resumed with 1 checkpoints every iteration (the old schedule's next
    checkpoint, at 100, was kept: a crash lost everything since the resume)."""
    from machina.checkpoint import latest_checkpoint

    lin = torch.nn.Linear(2, 2)
    with logger.Run(tmp_path, 3, "task", unit="iteration", checkpoint_interval=100) as run:
        while not run.done:
            run.record(epis_of(5), {}, checkpoint=dict(lin=lin))
    first = latest_checkpoint(tmp_path)  # the end of the budget's
    run = logger.Run(tmp_path, 8, "task", unit="iteration", checkpoint_interval=1, resume=True)
    names = []
    with run:
        assert run.restore(lin=lin)
        for _ in range(2):
            run.record(epis_of(5), {}, checkpoint=dict(lin=lin))
            names.append(latest_checkpoint(tmp_path))
    assert len({first, *names}) == 3


def scalars_of(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return []
    # by step: files are read in name order, and two writers' names within one second
    # order by a per-process counter as text (".10" before ".9")
    return sorted((e.step, e.value) for e in acc.Scalars(tag))


def test_resume_cuts_tensorboard_rows_by_time_and_leaves_other_writers_alone(tmp_path):
    # rows without env steps are all at step 0: cut by the checkpoint's time, not by step
    from torch.utils.tensorboard import SummaryWriter

    mine = SummaryWriter(str(tmp_path))  # a user's own writer in the run folder
    with logger.Run(tmp_path, 4, "task", unit="iteration", checkpoint_interval=2) as run:
        for i in range(3):
            run.record([], {"It": i}, checkpoint=dict(lin=torch.nn.Linear(1, 1)))
            mine.add_scalar("Mine", float(i), 100 + i)
    mine.close()
    run = logger.Run(tmp_path, 4, "task", unit="iteration", checkpoint_interval=2, resume=True)
    with run:
        assert run.restore(lin=torch.nn.Linear(1, 1))
        while not run.done:
            run.record([], {"It": 10 + run.total_iter}, checkpoint=dict(lin=torch.nn.Linear(1, 1)))
    assert scalars_of(tmp_path, "It") == [(0, 0.0), (0, 1.0), (0, 12.0), (0, 13.0)]
    assert scalars_of(tmp_path, "Mine") == [(100, 0.0), (101, 1.0), (102, 2.0)]


def test_a_new_run_in_a_used_folder_replaces_the_old_one(tmp_path):
    lin = torch.nn.Linear(1, 1)
    with logger.Run(tmp_path, 5, "old", unit="iteration", checkpoint_interval=1) as run:
        while not run.done:
            run.record(epis_of(10), {"It": run.total_iter}, checkpoint=dict(lin=lin))
    (tmp_path / "args.json").write_text('{"h_size": 32}')  # as run_ppo.py writes it
    logger.save_models(tmp_path, old=lin)
    # a new run that stops before its first row (a bad argument) leaves the old one whole
    logger.Run(tmp_path, 5, "new", unit="iteration")
    logger.get_logger().close()
    assert len(rows_of(tmp_path)) == 5 and len(scalars_of(tmp_path, "It")) == 5
    assert (tmp_path / "latest").is_file()
    assert (tmp_path / "args.json").is_file() and (tmp_path / "models" / "old_last.pt").is_file()
    # a new run (resume=False) in the same folder, stopped before its first checkpoint
    with torch.no_grad():
        lin.weight.fill_(7.0)
    with logger.Run(tmp_path, 5, "new", unit="iteration", checkpoint_interval=3) as run:
        for _ in range(2):
            run.record(epis_of(10), {"It": 100 + run.total_iter}, checkpoint=dict(lin=lin))
    assert scalars_of(tmp_path, "It") == [(10, 100.0), (20, 101.0)]  # the old run's are gone
    # and its settings and models: take_movie.py rebuilt the new run's policy with them
    assert not (tmp_path / "args.json").exists()
    assert not (tmp_path / "models" / "old_last.pt").exists()
    # resumed, it starts afresh: the old run's checkpoints (done, other weights) are gone
    run = logger.Run(tmp_path, 5, "new", unit="iteration", resume=True)
    with pytest.warns(UserWarning, match="no checkpoint"):
        assert not run.restore(lin=lin)
    assert run.total_iter == 0 and not run.done and float(lin.weight) == 7.0
    assert rows_of(tmp_path) == [] and scalars_of(tmp_path, "It") == []
    logger.get_logger().close()


def test_resume_refuses_other_settings_by_name(tmp_path):
    """Settings saved with the checkpoint must come back the same, but for the run folder,
    the resume flag, the budget and the names given as ``resumable``; the error names each
    that differs and is raised before the folder is touched (log, events, progress.csv).
    Equal settings (tuples as lists, NaN as NaN, dicts in any order) resume; a name only
    one side has, a run saved without settings, or one resumed without them is not
    compared."""
    lin = torch.nn.Linear(2, 2)
    saved = dict(
        activation="tanh", lr=3e-4, sizes=(64, 64), clip=float("nan"), net={"a": 1, "b": 2},
        resume=None, epoch=5, removed_flag=1,
    )  # fmt: skip
    with logger.Run(tmp_path, 2, "task", unit="iteration", settings=saved) as run:
        run.record(epis_of(10), {}, checkpoint=dict(lin=lin))
    logger.get_logger().close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    other = {**saved, "activation": "relu", "lr": 1e-3, "new_flag": 1}
    del other["removed_flag"]
    with pytest.raises(ValueError) as err:
        logger.Run(tmp_path, 2, "task", unit="iteration", resume=True, settings=other)
    message = str(err.value)
    assert message.startswith(f"settings: the run in {tmp_path} was saved with other settings")
    assert 'activation: saved "tanh", given "relu"' in message
    assert "lr: saved 0.0003, given 0.001" in message
    for name in ("sizes", "clip", "net", "new_flag", "removed_flag"):
        assert name not in message
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before

    same = {
        **saved, "net": {"b": 2, "a": 1}, "resume": str(tmp_path), "log": "elsewhere",
        "max_steps": 10, "epoch": 9,
    }  # fmt: skip
    for settings in (same, None):
        run = logger.Run(
            tmp_path, 4, "task", unit="iteration", resume=True, settings=settings,
            resumable=iter(["epoch"]),
        )  # fmt: skip
        assert run.restore(lin=lin)
        logger.get_logger().close()
    with pytest.raises(ValueError, match="epoch: saved 5, given 9"):
        logger.Run(tmp_path, 4, "task", unit="iteration", resume=True, settings=same)
    with logger.Run(tmp_path / "plain", 1, "task", unit="iteration") as run:
        run.record(epis_of(10), {}, checkpoint=dict(lin=lin))
    run = logger.Run(tmp_path / "plain", 2, "task", unit="iteration", resume=True, settings=other)
    assert run.restore(lin=lin)
    logger.get_logger().close()
    with pytest.raises(TypeError, match="settings: expected a mapping"):
        logger.Run(tmp_path / "bad", 1, "task", settings=["lr"])
    with pytest.raises(TypeError, match="resumable: expected an iterable of names"):
        logger.Run(tmp_path / "bad", 1, "task", resumable="epoch")
    with pytest.raises(ValueError, match=r"resumable: names not in settings: \['epochs'\]"):
        logger.Run(tmp_path / "bad", 1, "task", settings=saved, resumable=["epochs"])


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    with logger.Run(tmp_path, 1, "task") as run:  # a run that never saved a checkpoint
        run.record(epis_of(10), {})
    run = logger.Run(tmp_path, 1, "task", resume=True)
    with pytest.warns(UserWarning, match="resume: no checkpoint in .*; starting a new run"):
        assert not run.restore(lin=torch.nn.Linear(1, 1))
    assert rows_of(tmp_path) == [] and run.total_step == 0
    logger.get_logger().close()


# A tiny DDPG run whose episodes do not depend on the sampler's RNGs (which no checkpoint
# holds yet): every episode starts from the same state and actions are deterministic. What
# remains (networks, targets, optimisers, replay, global RNG for the batches, counters) must
# come back bit for bit from a checkpoint in a new process.
DDPG_LOOP = string.Template("""
import copy

import gymnasium as gym
import torch

from machina import logger
from machina.logger import run as run_module
from machina.algos import ddpg
from machina.nets import PolNet, QNet
from machina.pols import DeterministicActionNoisePol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc


class FixedStart(gym.Wrapper):
    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=0, options=options)


torch.set_num_threads(1)
torch.manual_seed(0)
env = gym.make("Pendulum-v1", max_episode_steps=20)
if $fixed_start:
    env = FixedStart(env)
ob, ac = env.observation_space, env.action_space
pol = DeterministicActionNoisePol(ob, ac, PolNet(ob, ac, 8, 8, deterministic=True))
qf = DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8))
targ_pol, targ_qf = copy.deepcopy(pol), copy.deepcopy(qf)
optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
optim_qf = torch.optim.Adam(qf.parameters(), 1e-3)
off_traj = Traj(max_steps=1000)
state = dict(pol=pol, qf=qf, targ_pol=targ_pol, targ_qf=targ_qf, optim_pol=optim_pol,
             optim_qf=optim_qf, off_traj=off_traj)
with EpiSampler(env, pol, seed=0) as sampler:
    state["sampler"] = sampler
    run = logger.Run(r"$log", $max_steps, "ddpg", eval_interval=80, resume=$resume)
    with run:
        print("restored", run.restore(**state))
        while not run.done:
            epis = sampler.sample(pol, max_steps=40, deterministic=True)
            traj = Traj()
            traj.add_epis(epis)
            traj.register_epis()
            off_traj.add_traj(traj)
            result = ddpg.train(off_traj, pol, qf, targ_pol, targ_qf, optim_pol, optim_qf,
                                epoch=traj.num_step, batch_size=16, tau=0.05, gamma=0.9,
                                log_enable=False)
            run.record(epis, result, checkpoint=state,
                       models=dict(pol=pol, qf=qf, targ_pol=targ_pol, targ_qf=targ_qf,
                                   optim_qf=optim_qf),
                       evaluate=lambda: sampler.sample(pol, max_epis=1, deterministic=True))
""")


def assert_identical(a, b, where):
    """Nested state dicts equal: same keys, tensors equal bit for bit, other values equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def ddpg_run(log, max_steps, resume=False, fixed_start=True):
    code = DDPG_LOOP.substitute(
        log=log, max_steps=max_steps, resume=resume, fixed_start=fixed_start
    )
    return run_python(code, timeout=300).stdout


def test_a_run_resumed_in_a_new_process_equals_an_uninterrupted_one(tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert "restored False" in ddpg_run(whole, 160)
    assert "restored False" in ddpg_run(halves, 80)
    out = ddpg_run(halves, 160, resume=True)
    assert "restored True" in out and "ddpg: done after 160 steps" in out

    for name in ("pol", "qf", "targ_pol", "targ_qf", "optim_qf"):
        a = torch.load(whole / "models" / f"{name}_last.pt")
        b = torch.load(halves / "models" / f"{name}_last.pt")
        assert_identical(a, b, name)
    # progress.csv continued, not restarted: the same four rows, to the last digit
    rows = rows_of(halves)
    assert [int(r["TotalStep"]) for r in rows] == [40, 80, 120, 160]
    assert rows == rows_of(whole)


def test_a_larger_budget_after_an_end_of_budget_evaluation_continues_bit_for_bit(tmp_path):
    """A run stopped at 120 steps (not an evaluation point: every 80) evaluates there
    because its budget ends; that evaluation draws from the training sampler's environments
    (their resets are not fixed here). Resumed to 160, it must still equal the run that went
    to 160 at once, which never evaluated at 120: the checkpoint holds the state before it."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    ddpg_run(whole, 160, fixed_start=False)
    ddpg_run(part, 120, fixed_start=False)
    assert "EvalReturn" in rows_of(part)[-1] and rows_of(part)[-1]["EvalReturn"] != ""
    assert "restored True" in ddpg_run(part, 160, resume=True, fixed_start=False)
    for name in ("pol", "qf", "targ_pol", "targ_qf", "optim_qf"):
        a = torch.load(whole / "models" / f"{name}_last.pt")
        b = torch.load(part / "models" / f"{name}_last.pt")
        assert_identical(a, b, name)
    assert [int(r["TotalStep"]) for r in rows_of(part)] == [40, 80, 120, 160]


def test_an_end_of_budget_evaluation_that_solves_does_not_end_a_larger_resumed_budget(tmp_path):
    """Evaluated at its budget's end (not an evaluation point), a run reports it, solved or
    not; resumed with a larger budget it trains on to its next evaluation point, as the
    run given that budget at once did: the checkpoint keeps the evaluation before it."""

    def go(log, max_steps, resume):
        weight = torch.zeros(1)
        run = logger.Run(log, max_steps, "task", 1000, solve_return=5.0, resume=resume)
        with run:
            run.restore(weight=weight)
            while not run.done:
                weight += 1.0  # one "training" iteration
                run.record(
                    epis_of(100), {}, evaluate=Evaluator(ret=9.0), checkpoint=dict(weight=weight)
                )
        return run.total_step, float(weight), run.solved

    assert go(tmp_path / "whole", 3000, False) == (1000, 10.0, True)
    assert go(tmp_path / "part", 300, False) == (300, 3.0, True)
    assert go(tmp_path / "part", 3000, True) == (1000, 10.0, True)


def test_rows_cut_on_a_resume_survive_an_interruption(tmp_path, monkeypatch):
    """The cut CSV replaces the file at once: interrupted while writing it (Ctrl-C, a full
    disk), the run keeps every row, where emptying the file first lost them all."""
    path = tmp_path / "progress.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["TotalStep"], *([i] for i in range(50))])
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module.csv, "writer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_module.truncate_rows(path, 40)
    assert path.read_bytes() == before
    monkeypatch.undo()
    run_module.truncate_rows(path, 40)
    assert path.read_bytes().splitlines() == before.splitlines()[:41]


def test_run_ddpg_example_resumes(tmp_path):
    """A resumed example continues to the larger budget; the same resume with another
    setting is refused, naming it, and leaves the run as it was."""
    args = ["--steps_per_iter", "200", "--eval_interval", "200", "--eval_epis", "1"]
    run_example("run_ddpg.py", "--log", tmp_path, "--max_steps", 200, *args)
    refused = subprocess.run(
        example_cmd("run_ddpg.py", "--resume", tmp_path, "--max_steps", 400, *args,
                    "--gamma", 0.9),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "settings: the run in" in refused.stderr
    assert "gamma: saved 0.99, given 0.9" in refused.stderr
    assert (tmp_path / "latest").read_text().strip() == "ckpt-000000"
    out = run_example("run_ddpg.py", "--resume", tmp_path, "--max_steps", 400, *args).stdout
    assert "Pendulum-v1: done after 400 steps" in out
    rows = rows_of(tmp_path)
    assert [int(r["TotalStep"]) for r in rows] == [200, 400]
    assert all(r["EvalReturn"] != "" for r in rows)
    assert (tmp_path / "latest").read_text().strip() == "ckpt-000001"
