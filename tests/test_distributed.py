"""Data-parallel training with torch.distributed: real 2-process gloo groups launched with
torchrun on 127.0.0.1 (worker: tests/_distributed_worker.py).

Mode 1 (every rank holds the same episodes, ``Traj(ddp=True)``): PPO's (several epochs per
train call), DDPG's, SAC's, TD3's and prioritised replay's (minibatches of an odd size, so
the ranks' shares differ) parameters equal single-process training on the same data within
float32 tolerance, identical on both ranks.
Mode 2 (each rank samples its own episodes, different amounts): training finishes, the ranks
agree on the number of steps and end with identical parameters.
"""

import csv
import math
import os
import shutil
import signal
import socket
import subprocess
import sys

import _distributed_worker as worker
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_distributed_worker.py")
WORLD = 2
TIMEOUT_S = 180  # a whole launch; the worker's collectives time out after 60 s themselves


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, *script_args: str, cwd: str = ROOT, world: int = WORLD) -> str:
    """Run ``script`` on ``WORLD`` local ranks; return its output, failing the test on a
    non-zero exit. The whole process group is killed if it outlives ``TIMEOUT_S``."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", script, *script_args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: the finally below kills every rank
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        output = "(timed out)"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 0, f"torchrun {' '.join(cmd[2:])} failed:\n{output[-4000:]}"
    return output


def run_torchrun(scenario: str, out_dir) -> list[dict]:
    """The worker's ``scenario`` on ``WORLD`` ranks; each rank's saved results."""
    torchrun(WORKER, scenario, str(out_dir))
    return [
        torch.load(out_dir / f"{scenario}_rank{r}.pt", weights_only=False) for r in range(WORLD)
    ]


@pytest.fixture(scope="module")
def same_data(tmp_path_factory):
    """Mode 1: the launch, and the single-process references on the same episodes."""
    out_dir = tmp_path_factory.mktemp("same_data")
    epis = {f"epis_rnn{rnn}": worker.sample_epis(seed=7, max_steps=400, rnn=rnn) for rnn in
            (False, True)}  # fmt: skip
    for rnn in (False, True):  # 18 episodes of 10-36 steps, 340 in all
        epis[f"cart_rnn{rnn}"] = worker.sample_cartpole_epis(seed=13, max_steps=340, rnn=rnn)
    torch.save(epis, out_dir / "inputs.pt")
    ranks = run_torchrun("same_data", out_dir)
    refs = {}
    for rnn in (False, True):
        pol, vf = worker.build_ppo(rnn)
        epi = epis[f"epis_rnn{rnn}"]
        refs[f"ppo_rnn{rnn}"] = worker.train_ppo(
            epi, pol, vf, False, rnn, adam=False, epoch=worker.COMPARED_EPOCHS
        )
    pol, qf = worker.build_ddpg()
    refs["ddpg"] = worker.train_ddpg(epis["epis_rnnFalse"], pol, qf, False)
    pol, qfs = worker.build_sac()
    refs["sac_sgd"] = worker.train_sac(epis["epis_rnnFalse"], pol, qfs, False, adam=False)
    pol, qfs = worker.build_td3()
    refs["td3"] = worker.train_td3(epis["epis_rnnFalse"], pol, qfs, False)
    refs["prioritized_ddpg"] = worker.train_prioritized_ddpg(epis["epis_rnnFalse"], False)
    refs["r2d2_sac"] = worker.train_r2d2_sac(epis["epis_rnnTrue"], False)
    refs["diayn"] = worker.train_diayn(epis["epis_rnnFalse"], False)
    for rnn in (False, True):
        refs[f"ppo_cart_rnn{rnn}"] = worker.train_ppo_cartpole(epis[f"cart_rnn{rnn}"], False, rnn)
        refs[f"ppo_tail_rnn{rnn}"] = worker.train_ppo_cartpole(
            epis[f"cart_rnn{rnn}"], False, rnn, tail_of_one=True
        )
    return ranks, refs


def flat(state_dict: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1).double() for v in state_dict.values()])


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("rnn", [False, True], ids=["feed_forward", "recurrent"])
def test_same_data_ppo_equals_single_process_training(same_data, rnn):
    ranks, refs = same_data
    ref = refs[f"ppo_rnn{rnn}"]
    for name in ("pol", "vf"):
        # Bit-identical on the ranks: each step applies the same all-reduced gradient.
        assert_states_equal(ranks[0][f"ppo_rnn{rnn}"][name], ranks[1][f"ppo_rnn{rnn}"][name])
        got, want = flat(ranks[0][f"ppo_rnn{rnn}"][name]), flat(ref[name])
        # Float32: each rank sums half of the minibatch and the halves are averaged, so every
        # gradient differs from the single-process one by rounding (an ulp or so); SGD (see
        # worker.make_optim) carries that linearly through the 3 epochs (30 steps
        # feed-forward, 12 recurrent). 1e-6 is ~8 ulps of weights of order 1 (measured: 1
        # ulp), far below one step (~1e-3). Epochs 2 and 3 in another order than the single
        # process's (drawn from the global RNG, as before issue 10's fix) differ by ~1e-2.
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert not torch.equal(got, flat(worker.build_ppo(rnn)[0 if name == "pol" else 1]
                                         .state_dict()))  # fmt: skip
    # The policy's forward draws an action for the whole minibatch on every rank, so rank 0's
    # generator ends where one process's does (the next iteration's Traj seeds from it).
    assert torch.equal(ranks[0][f"ppo_rnn{rnn}"]["rng"], ref["rng"])
    # The ranks saw different halves of each minibatch: their losses differ, their mean is
    # the single-process loss.
    for key in ("PolLoss", "VfLoss"):
        r0, r1 = (torch.tensor(r[f"ppo_rnn{rnn}"]["result"][key]) for r in ranks)
        assert len(r0) == len(r1) == len(ref["result"][key])
        assert not torch.equal(r0, r1)


def test_same_data_ddpg_equals_single_process_training(same_data):
    """Off-policy: 8 DDPG steps on uniform random batches (noise-free losses)."""
    ranks, refs = same_data
    for name in ("pol", "qf", "targ_qf"):
        assert_states_equal(ranks[0]["ddpg"][name], ranks[1]["ddpg"][name])
        # as for PPO: a rounding difference per step, carried linearly (measured: 1 ulp)
        got, want = flat(ranks[0]["ddpg"][name]), flat(refs["ddpg"][name])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    initial = flat(worker.build_ddpg()[0].state_dict())
    assert (flat(refs["ddpg"]["pol"]) - initial).abs().max() > 1e-2


@pytest.mark.parametrize("run", ["sac", "sac_sgd"])
def test_same_data_sac_keeps_ranks_identical(same_data, run):
    """Adam or SGD, the ranks stay identical: nets, targets and temperature."""
    ranks, _ = same_data
    r0, r1 = ranks[0][run], ranks[1][run]
    assert_states_equal(r0["pol"], r1["pol"])
    for a, b in zip(r0["qfs"] + r0["targ_qfs"], r1["qfs"] + r1["targ_qfs"]):
        assert_states_equal(a, b)
    assert torch.equal(r0["log_alpha"], r1["log_alpha"])
    assert float(r0["log_alpha"]) != 0.0
    assert r0["result"]["QfLoss"] != r1["result"]["QfLoss"]  # different shares of each batch


def test_same_data_sac_equals_single_process_training(same_data):
    """SAC's losses draw their action noise for the whole minibatch on every rank (each rank's
    generator made rank 0's before each minibatch), so mode 1 is the single-process run even
    for a loss that draws noise (SGD, as PPO's comparison: see worker.make_optim)."""
    ranks, refs = same_data
    got, want = ranks[0]["sac_sgd"], refs["sac_sgd"]
    pairs = [(got["pol"], want["pol"])] + list(zip(got["qfs"] + got["targ_qfs"],
                                                   want["qfs"] + want["targ_qfs"]))  # fmt: skip
    for a, b in pairs:
        # as for PPO: a rounding difference per step, carried linearly (measured: 1 ulp)
        torch.testing.assert_close(flat(a), flat(b), rtol=0, atol=1e-6)
    torch.testing.assert_close(got["log_alpha"], want["log_alpha"], rtol=0, atol=1e-6)
    initial = flat(worker.build_sac()[0].state_dict())
    assert (flat(want["pol"]) - initial).abs().max() > 1e-3


def test_same_data_td3_equals_single_process_training(same_data):
    """TD3's target smoothing noise is drawn for the whole minibatch on every rank."""
    ranks, refs = same_data
    for name in ("pol", "qfs"):
        a, b = ranks[0]["td3"][name], ranks[1]["td3"][name]
        for x, y in zip(a if name == "qfs" else [a], b if name == "qfs" else [b]):
            assert_states_equal(x, y)
    got, want = ranks[0]["td3"], refs["td3"]
    for a, b in zip([got["pol"], *got["qfs"]], [want["pol"], *want["qfs"]]):
        torch.testing.assert_close(flat(a), flat(b), rtol=0, atol=1e-6)
    initial = flat(worker.build_td3()[1][0].state_dict())
    assert (flat(want["qfs"][0]) - initial).abs().max() > 1e-3


@pytest.mark.parametrize("run", ["prioritized_ddpg", "r2d2_sac"])
def test_same_data_prioritized_replay_equals_single_process_training(same_data, run):
    """Each rank writes the whole minibatch's priorities (the shares' TD errors gathered in
    the single process's order), so the replay memories stay equal on the ranks and to the
    single process's, and with them the draws; R2D2-SAC's masked means divide by the whole
    minibatch's count of trained steps (windows that start an episode train their burn-in)."""
    ranks, refs = same_data
    r0, r1, want = ranks[0][run], ranks[1][run], refs[run]
    assert torch.equal(r0["pris"], r1["pris"])
    torch.testing.assert_close(r0["pris"], want["pris"], rtol=0, atol=1e-5)  # priorities ~1
    assert not torch.equal(want["pris"], torch.ones_like(want["pris"]))
    nets = [n for n in ("pol", "qf", "qfs") if n in want]
    for name in nets:
        got_states = r0[name] if name == "qfs" else [r0[name]]
        want_states = want[name] if name == "qfs" else [want[name]]
        for a, b in zip(got_states, want_states):
            torch.testing.assert_close(flat(a), flat(b), rtol=0, atol=1e-6)


def test_same_data_reported_statistics_are_the_whole_minibatches(same_data):
    """On shares of 15 and 16 steps (R2D2-SAC: 7 and 8 windows), SAC's and R2D2-SAC's
    entropies, DIAYN's discriminator accuracies and its mean reward are the whole
    minibatches' on every rank (one process's), not each share's."""
    ranks, refs = same_data
    r0, r1, want = ranks[0]["diayn"], ranks[1]["diayn"], refs["diayn"]
    assert r0 == r1
    # exact counts of 31 on both sides; 1e-6 covers float32 k/31 against a float64 ratio
    assert r0["accs"] == pytest.approx(want["accs"], abs=1e-6)
    assert r0["rew"] == pytest.approx(want["rew"], abs=1e-5)
    assert r0["entropy"] == pytest.approx(want["entropy"], abs=1e-5)
    got, want = ranks[0]["sac_sgd"]["result"], refs["sac_sgd"]["result"]
    assert got["Entropy"] == ranks[1]["sac_sgd"]["result"]["Entropy"]
    assert got["Entropy"] == pytest.approx(want["Entropy"], abs=1e-5)
    got, other, want = (r["r2d2_sac"]["entropy"] for r in (*ranks, refs))
    assert got == other and got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("rnn", [False, True], ids=["feed_forward", "recurrent"])
def test_same_data_ppo_with_a_last_minibatch_of_one_equals_single_process_training(same_data, rnn):
    """Each epoch ends on a minibatch of one step (sequence): one rank's share is empty, its
    losses 0, and the step is taken as in one process (it was skipped); the empty share draws
    the policy's (unused) actions for the whole minibatch too, so every rank's generator ends
    where one process's does (the next unseeded Traj draws the same minibatches)."""
    ranks, refs = same_data
    key = f"ppo_tail_rnn{rnn}"
    for r in ranks:
        assert torch.equal(r[key]["rng"], refs[key]["rng"])
    for name in ("pol", "vf"):
        assert_states_equal(ranks[0][key][name], ranks[1][key][name])
        torch.testing.assert_close(
            flat(ranks[0][key][name]), flat(refs[key][name]), rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("rnn", [False, True], ids=["feed_forward", "recurrent"])
def test_same_data_ppo_on_uneven_shares_equals_single_process_training(same_data, rnn):
    """Episodes ending at falls: 39-step minibatches split 19/20 and sequence shares hold
    different numbers of real steps; each rank divides its sums by the whole
    minibatch's count per rank and standardises advantages with the whole minibatch's
    statistics, so the averaged gradients are the single process's."""
    ranks, refs = same_data
    key = f"ppo_cart_rnn{rnn}"
    for name in ("pol", "vf"):
        assert_states_equal(ranks[0][key][name], ranks[1][key][name])
        torch.testing.assert_close(
            flat(ranks[0][key][name]), flat(refs[key][name]), rtol=0, atol=1e-6
        )


def test_gradients_are_averaged_before_clipping(same_data):
    for unit in (r["unit"] for r in same_data[0]):
        expected = torch.tensor([-0.6, -0.8, 0.0])
        torch.testing.assert_close(unit["clip_after_average"], expected)
        torch.testing.assert_close(unit["distributed_sgd_clip"], expected)
        torch.testing.assert_close(unit["distributed_adamw_grad"], torch.tensor([1.5, 2.0, 0.0]))
    u0, u1 = (r["unit"] for r in same_data[0])
    assert torch.equal(u0["distributed_adamw"], u1["distributed_adamw"])


def test_a_plain_loop_after_make_model_distributed_warns_unless_it_averages(same_data):
    """A step on gradients nothing averaged warns, once; average_gradients after backward
    steps both ranks by the mean gradient."""
    for rank in same_data[0]:
        assert torch.equal(rank["unit"]["plain_loop_step"], torch.tensor([[-1.5]]))
        first, averaged, third = rank["unit"]["plain_loop_warnings"]
        assert len(first) == 1 and "average_gradients(model.parameters())" in first[0]
        assert averaged == [] and third == []  # averaged: none; unaveraged again: once only
        assert rank["unit"]["pickles_after_averaging"]


def test_average_tensor_gives_every_rank_the_mean(same_data):
    for r in same_data[0]:
        assert torch.equal(r["unit"]["average_tensor"], torch.tensor([1.0, 1.0]))


def test_a_sum_over_unequal_shares_steps_as_the_whole_sum(same_data):
    for r in same_data[0]:
        assert torch.equal(r["unit"]["share_sum_step"], torch.tensor([-10.0]))  # 0 - 1 * 10
        assert "expected this rank's" in r["unit"]["share_mean_error"]


def test_average_tensor_of_equal_values_is_exact_on_three_ranks(tmp_path):
    """Ranks that hold the same data (TRPO's policy step on a Traj(ddp=True)) average equal
    gradients: their mean must be the value itself, which float32's (g + g + g) / 3 is not."""
    torchrun(WORKER, "three_ranks", str(tmp_path), world=3)
    for r in range(3):
        out = torch.load(tmp_path / f"three_ranks_rank{r}.pt", weights_only=False)
        assert out["float32_mean_differs"]  # the values are ones that float32 would change
        assert torch.equal(out["averaged"], out["value"])


def test_an_empty_share_adds_nothing_and_a_plain_mean_of_it_is_named(same_data):
    u0, u1 = (r["unit"] for r in same_data[0])
    for u in (u0, u1):  # one process: mean of one item, gradient 3, lr 1
        assert torch.equal(u["empty_share_step"], torch.tensor([-3.0]))
    assert "this rank's share of the minibatch is empty" in u0["empty_share_error"]
    assert "finite on rank 1 but not on another rank" in u1["empty_share_error"]


def test_a_gradient_on_one_rank_only_is_averaged_with_zero(same_data):
    for r in same_data[0]:
        # a: gradient 2 on both ranks; b: 4 on rank 0, none on rank 1 -> mean 2; SGD lr 1.
        assert torch.equal(r["unit"]["one_rank_grad"], torch.tensor([-1.0, -1.0, -1.0, -1.0]))


def test_clipped_parameters_outside_the_optimiser_are_averaged_too(same_data):
    """A clip set beyond the optimiser's parameters (ppo_clip clips pol.parameters() while
    optim_pol may hold the head only): each rank clipped by its own factor and the ranks
    drifted apart silently."""
    expected = torch.tensor([1.0, 1.0, 1.0 - 1.0 / math.sqrt(7.25)])
    for r in same_data[0]:
        torch.testing.assert_close(r["unit"]["clip_beyond_optim"], expected)


def test_averaging_keeps_each_gradient_dtype_and_a_wide_loss(same_data):
    for r in same_data[0]:
        dtype, b = r["unit"]["mixed_dtype_grad"]
        assert dtype == torch.float32 and torch.equal(b, torch.tensor([-1.0, -1.0]))
        assert r["unit"]["half_first_loss"] == pytest.approx(2e5 + 2.0)


def test_ddp_traj_batching_checks_every_rank_agrees(same_data):
    """Traj(ddp=True): a step on a share without averaging warns (once) that the ranks
    drift apart; another batch_size per rank refused on both; bad indices on one rank
    raised on both (the other waited in a collective)."""
    u0, u1 = (r["unit"] for r in same_data[0])
    for u in (u0, u1):
        assert len(u["not_averaging_warnings"]) == 1
        assert "averages no gradient over the ranks" in u["not_averaging_warnings"][0]
        assert (
            "every rank must ask for the same size; got between 8 and 16" in (u["batch_size_error"])
        )
    assert "indices: expected step indices in [0, 32)" in u1["indices_error"]
    assert "rank 1 of 2 could not build its batches" in u0["indices_error"]


def test_distributed_helpers_inside_rank_local_answer_for_this_process(same_data):
    assert same_data[0][0]["unit"]["rank_local_helpers"] == (3.0, [5], 7, None)


def test_nan_loss_on_one_rank_stops_every_rank_before_the_step(same_data):
    u0, u1 = (r["unit"] for r in same_data[0])
    assert "unit_loss is finite on rank 0 but not on another rank" in u0["nan_error"]
    assert "unit_loss is nan on rank 1" in u1["nan_error"]
    assert "non-finite values in: ['x']" in u1["nan_error"]
    assert u0["nan_unchanged"] and u1["nan_unchanged"]


def test_own_data_of_unequal_size_finishes_in_sync(tmp_path):
    """Mode 2: each rank samples its own episodes (own seed, 300 vs 500 steps)."""
    torch.save({"steps_per_rank": [300, 500]}, tmp_path / "inputs.pt")
    r0, r1 = run_torchrun("own_data", tmp_path)
    for rnn in (False, True):
        assert r0[f"num_step_rnn{rnn}"] < r1[f"num_step_rnn{rnn}"]
        a, b = r0[f"ppo_rnn{rnn}"], r1[f"ppo_rnn{rnn}"]
        assert_states_equal(a["pol"], b["pol"])
        assert_states_equal(a["vf"], b["vf"])
        # the ranks agreed on the smaller rank's number of minibatches
        assert len(a["result"]["PolLoss"]) == len(b["result"]["PolLoss"])
    assert_states_equal(r0["sac"]["pol"], r1["sac"]["pol"])
    for a, b in zip(r0["sac"]["qfs"], r1["sac"]["qfs"]):
        assert_states_equal(a, b)
    # TRPO's own natural-gradient step (not optimizer_step) keeps the ranks identical too
    assert_states_equal(r0["trpo"]["pol"], r1["trpo"]["pol"])
    assert_states_equal(r0["trpo"]["vf"], r1["trpo"]["vf"])
    # ppo_kl's coefficient follows the KL of all ranks' data: the same on every rank
    assert r0["ppo_kl"]["kl_means"] == r1["ppo_kl"]["kl_means"]
    assert r0["ppo_kl"]["kl_beta"] == r1["ppo_kl"]["kl_beta"]
    assert_states_equal(r0["ppo_kl"]["pol"], r1["ppo_kl"]["pol"])
    assert r0["gloo_threads_left"] == [] and r1["gloo_threads_left"] == []
    # a rank without steps: it names its traj, the other names that rank's, neither waits
    assert r1["empty_rank"][:2] == ("ValueError", "ppo_clip.train: traj holds no registered steps")
    assert r0["empty_rank"][0] == "RuntimeError"
    assert "traj of another rank holds no registered steps" in r0["empty_rank"][1]
    assert r0["empty_rank"][2] < 30 and r1["empty_rank"][2] < 30  # the timeout is 60 s


def test_destroy_leaves_no_gloo_thread(same_data):
    """After training (optimisers import torch.distributed.nn lazily, whose default arguments
    would hold the group) ``mdist.destroy()`` really ends the group: no gloo thread is left
    to abort the interpreter at exit."""
    for rank in same_data[0]:
        assert rank["gloo_threads_left"] == []


def test_example_runs_and_resumes_under_torchrun(tmp_path):
    """example/run_ppo_distributed.py, two small iterations on 2 ranks, each rank on its own
    episodes; rank 0 alone logs, every rank's episodes and steps. Then, killed after rank 0
    checkpointed its second iteration and before rank 1 did: the resume loads the first on
    both ranks, cuts progress.csv back to its row and ends as the uninterrupted run, on every
    rank; on another number of ranks it is refused."""
    from conftest import assert_same_state

    script = os.path.join(ROOT, "example", "run_ppo_distributed.py")
    args = ["--max_steps", "300", "--steps_per_iter", "100", "--epoch_per_iter", "1",
            "--h_size", "16"]  # fmt: skip
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    output = torchrun(script, "--run_dir", str(whole), *args, cwd=str(tmp_path))
    assert output.count("iter   1") == 1 and output.count("iter   2") == 1
    assert "on 2 rank(s)" in output and (whole / "models" / "pol_last.pt").exists()
    with open(whole / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:  # both ranks' (>= 100 steps each), episodes of CartPole's random start
        assert int(row["StepPerIter"]) >= 200 and int(row["EpisodePerIter"]) >= 4
        assert float(row["RewardStd"]) > 0.0
    assert int(rows[1]["TotalStep"]) == int(rows[0]["StepPerIter"]) + int(rows[1]["StepPerIter"])
    assert int(rows[1]["TotalEpisode"]) == sum(int(r["EpisodePerIter"]) for r in rows)

    shutil.copytree(whole, crashed)
    rank1 = crashed / "checkpoints" / "rank-1"
    shutil.rmtree(rank1 / "ckpt-000002")
    (rank1 / "latest").write_text("ckpt-000001")
    output = torchrun(script, "--resume", str(crashed), *args, cwd=str(tmp_path))
    assert output.count("iter   1") == 0 and output.count("iter   2") == 1
    for rank in (0, 1):
        a, b = (
            torch.load(d / "checkpoints" / f"rank-{rank}" / "ckpt-000002" / "state.pt")
            for d in (whole, crashed)
        )
        assert "sampler" in a
        assert_same_state(a, b, f"rank {rank}")
    lines = [(d / "progress.csv").read_text().splitlines() for d in (whole, crashed)]
    assert len(lines[0]) == 3 and lines[0] == lines[1]
    with pytest.raises(AssertionError, match="saved on 2 ranks, run on 1"):
        torchrun(script, "--resume", str(crashed), *args, cwd=str(tmp_path), world=1)


def test_init_without_torchrun_runs_in_one_process(monkeypatch):
    import machina.distributed as mdist
    from machina.utils import distributed as dist_utils

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    mdist.init()
    try:
        assert not mdist.is_initialized() and mdist.is_main() and mdist.get_world_size() == 1
        assert mdist.broadcast_object([1, 2]) == [1, 2] and mdist.mean_over_ranks(3) == 3.0
        assert mdist.gather_object({"a": 1}) == [{"a": 1}]
        mdist.barrier()  # no-op
    finally:
        mdist.destroy()
    assert not dist_utils.grad_averaging_enabled()


def test_init_names_what_is_wrong(monkeypatch):
    import machina.distributed as mdist

    for key in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "0")
    expected = r"\['WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'\] are missing .* torchrun"
    with pytest.raises(RuntimeError, match=expected):
        mdist.init()
    for key, value in (("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=r"backend: expected 'gloo', 'nccl' or 'mpi', got 'tcp'"):
        mdist.init(backend="tcp")
    if not torch.cuda.is_available():  # torch's own error was an AttributeError of torch._C
        with pytest.raises(
            ValueError, match=r"backend: 'nccl' needs a CUDA device .* backend='gloo'"
        ):
            mdist.init(backend="nccl")
