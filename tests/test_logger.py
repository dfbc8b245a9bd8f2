"""Tests for machina.logger, on real files: CSV, TensorBoard event files, PNG, text logs."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from machina import logger
from machina.logger import CsvOutput, Logger, plot_learning_curve, progress

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def read_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_valid_png(path):
    assert os.path.isfile(path)
    assert os.path.getsize(path) > len(PNG_MAGIC)
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC


@pytest.fixture
def quiet_logger():
    lg = Logger(stdout=False)
    yield lg
    lg.close()


# ---------------------------------------------------------------------------- CSV
def test_csv_round_trip(tmp_path, quiet_logger):
    path = tmp_path / "sub" / "progress.csv"  # parent directory is created
    quiet_logger.add_tabular_output(path)
    rows = [
        {"Loss": 0.125, "Iter": 0, "Name": "a"},
        {"Loss": -1.5e-7, "Iter": 1, "Name": "b"},
        {"Loss": 3.0, "Iter": 2, "Name": "c"},
    ]
    for row in rows:
        for key, value in row.items():
            quiet_logger.record_tabular(key, value)
        assert quiet_logger.dump_tabular() == row

    header, got = read_csv(path)
    assert header == ["Loss", "Iter", "Name"]
    assert len(got) == 3
    for want, have in zip(rows, got):
        assert float(have["Loss"]) == want["Loss"]  # full precision, not a rounded print
        assert int(have["Iter"]) == want["Iter"]
        assert have["Name"] == want["Name"]


def test_csv_header_is_extended_not_truncated(tmp_path, quiet_logger):
    path = tmp_path / "progress.csv"
    quiet_logger.add_tabular_output(path)
    quiet_logger.record_tabular("a", 1)
    quiet_logger.dump_tabular()
    quiet_logger.record_tabular("a", 2)
    quiet_logger.record_tabular("b", 20)
    quiet_logger.dump_tabular()
    quiet_logger.record_tabular("c", 300)  # "a" and "b" missing from this row
    quiet_logger.dump_tabular()
    quiet_logger.record_tabular("a", 4)
    quiet_logger.dump_tabular()

    header, rows = read_csv(path)
    assert header == ["a", "b", "c"]
    assert rows == [
        {"a": "1", "b": "", "c": ""},
        {"a": "2", "b": "20", "c": ""},
        {"a": "", "b": "", "c": "300"},
        {"a": "4", "b": "", "c": ""},
    ]
    assert not os.path.exists(str(path) + ".tmp")


def test_csv_append_resumes_existing_file(tmp_path):
    path = tmp_path / "progress.csv"
    out = CsvOutput(path)
    out.write({"x": 1, "y": 2})
    out.close()
    out = CsvOutput(path, append=True)
    assert out.fieldnames == ["x", "y"]
    out.write({"y": 4, "x": 3})
    out.close()
    header, rows = read_csv(path)
    assert header == ["x", "y"]
    assert rows == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]

    CsvOutput(path).close()  # default: start a fresh file, as the original did
    assert os.path.getsize(path) == 0


def test_csv_append_drops_a_row_cut_short(tmp_path):
    """A row cut mid-write (a full disk, a power loss) got the next row glued onto it:
    '9,9' + '6,,' read as ['9', '96', '', ''] before."""
    path = tmp_path / "progress.csv"
    out = CsvOutput(path)
    for i in range(3):
        out.write({"x": i, "y": 10 * i})
    out.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b"9,9")  # a fourth row, cut
    out = CsvOutput(path, append=True)
    out.write({"x": 6, "y": 60})
    out.close()
    assert read_csv(path)[1][-2:] == [{"x": "2", "y": "20"}, {"x": "6", "y": "60"}]
    path.write_bytes(whole[:3])  # even the header cut: a fresh file
    out = CsvOutput(path, append=True)
    assert out.fieldnames == []
    out.write({"x": 7})
    out.close()
    assert read_csv(path) == (["x"], [{"x": "7"}])


def test_every_csv_output_gets_the_row_and_remove_stops_it(tmp_path, quiet_logger):
    p1, p2 = tmp_path / "one.csv", tmp_path / "two.csv"
    quiet_logger.add_tabular_output(p1)
    quiet_logger.add_tabular_output(p2)
    quiet_logger.add_tabular_output(str(p2))  # same file again: ignored
    assert quiet_logger.tabular_outputs == [str(p1), str(p2)]
    quiet_logger.record_tabular("v", 1)
    quiet_logger.dump_tabular()
    quiet_logger.remove_tabular_output(p1)
    quiet_logger.record_tabular("v", 2)
    quiet_logger.dump_tabular()

    assert [r["v"] for r in read_csv(p1)[1]] == ["1"]
    assert [r["v"] for r in read_csv(p2)[1]] == ["1", "2"]
    with pytest.raises(ValueError, match="one.csv"):
        quiet_logger.remove_tabular_output(p1)


def test_record_tabular_values(tmp_path, quiet_logger):
    quiet_logger.record_tabular("tensor", torch.tensor(2.5, requires_grad=True))
    quiet_logger.record_tabular("np", np.float32(0.25))
    quiet_logger.record_tabular("one_elem", np.array([7]))
    quiet_logger.record_tabular("np", np.int64(3))  # a later call for the key wins
    # numpy's bool is no numbers.Number: it was logged as the string 'True'
    quiet_logger.record_tabular("np_bool", np.any(np.array([0.1]) > 0.0))
    # a bfloat16 loss (numpy has none: refused before), exact as float32
    quiet_logger.record_tabular("bf16", torch.tensor(0.375, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="record_tabular_misc_stat"):
        quiet_logger.record_tabular("vec", np.zeros(3))
    row = quiet_logger.dump_tabular()
    assert row == {"tensor": 2.5, "np": 3, "one_elem": 7, "np_bool": True, "bf16": 0.375}
    assert all(type(v) in (float, int, bool) for v in row.values())
    assert quiet_logger.dump_tabular() == {}  # nothing recorded: nothing written


def test_record_tabular_misc_stat(quiet_logger):
    half = torch.bfloat16
    for values in (
        [torch.tensor(1.0), torch.tensor(3.0)],
        [torch.tensor(1.0, dtype=half), torch.tensor(3.0, dtype=half)],
        torch.tensor([1.0, 3.0], dtype=half),
    ):
        quiet_logger.record_tabular_misc_stat("Loss", values)
        row = quiet_logger.dump_tabular()
        assert row == {
            "LossAverage": 2.0,
            "LossStd": 1.0,
            "LossMedian": 2.0,
            "LossMin": 1.0,
            "LossMax": 3.0,
        }


# ---------------------------------------------------------------------------- text
def test_log_prints_timestamp_and_copies_to_text_file(tmp_path, capsys):
    text_path = tmp_path / "log.txt"
    with Logger(text_file=text_path) as lg:
        lg.log("hello machina")
        lg.log("plain", with_timestamp=False)
        lg.record_tabular("Reward", 1.5)
        lg.dump_tabular()
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.endswith(" | hello machina")
    assert first[:4].isdigit() and first[4] == "-"  # starts with the date
    assert "\nplain\n" in out
    assert "| Reward | 1.5 |" in out
    with open(text_path) as f:
        assert f.read() == out


def test_dump_no_print(capsys):
    lg = Logger()
    lg.record_tabular("a", 1)
    assert lg.dump_tabular(no_print=True) == {"a": 1}
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------- TensorBoard
def test_tensorboard_scalars_read_back(tmp_path, quiet_logger):
    tb_dir = tmp_path / "tb"
    quiet_logger.add_tensorboard_output(tb_dir)
    written = {10: (0.5, 1), 20: (0.25, 2), 35: (-1.0, 3)}
    for step, (loss, n) in written.items():
        quiet_logger.record_tabular("Loss", loss)
        quiet_logger.record_tabular("N", n)
        quiet_logger.record_tabular("Env", "Pendulum-v1")  # not numeric: skipped
        quiet_logger.dump_tabular(step=step)
    quiet_logger.close()

    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tb_dir))
    scalars = read_scalars(tb_dir)
    assert set(scalars) == {"Loss", "N"}
    assert scalars["Loss"] == [(s, pytest.approx(v[0])) for s, v in written.items()]
    assert scalars["N"] == [(s, float(v[1])) for s, v in written.items()]


def test_tensorboard_default_step_counts_dumps(tmp_path, quiet_logger):
    quiet_logger.add_tensorboard_output(tmp_path)
    for value in (1.0, 2.0, 3.0):
        quiet_logger.record_tabular("x", value)
        quiet_logger.dump_tabular()
    quiet_logger.remove_tensorboard_output(tmp_path)
    assert quiet_logger.tensorboard_outputs == []
    assert read_scalars(tmp_path)["x"] == [(0, 1.0), (1, 2.0), (2, 3.0)]


# ---------------------------------------------------------------------------- plot
def test_plot_learning_curve_writes_png(tmp_path, quiet_logger):
    csv_path = tmp_path / "progress.csv"
    quiet_logger.add_tabular_output(csv_path)
    for i in range(5):
        quiet_logger.record_tabular("RewardAverage", float(i) ** 2)
        quiet_logger.record_tabular("RewardStd", 0.5)
        quiet_logger.record_tabular("TotalStep", 1000 * (i + 1))
        quiet_logger.dump_tabular()
    png = plot_learning_curve(csv_path, tmp_path / "figs" / "curve.png", title="Test")
    assert png == str(tmp_path / "figs" / "curve.png")
    assert_valid_png(png)

    with pytest.raises(KeyError, match="NoSuchColumn"):
        plot_learning_curve(csv_path, tmp_path / "x.png", y="NoSuchColumn")


def test_plot_skips_rows_with_empty_cells(tmp_path):
    csv_path = tmp_path / "progress.csv"
    out = CsvOutput(csv_path)
    out.write({"TotalStep": 1})
    out.write({"TotalStep": 2, "Loss": 0.5})
    out.write({"TotalStep": 3, "Loss": 0.25})
    out.close()
    assert logger.read_csv_columns(csv_path, ["TotalStep", "Loss"]) == {
        "TotalStep": [2.0, 3.0],
        "Loss": [0.5, 0.25],
    }
    assert_valid_png(plot_learning_curve(csv_path, tmp_path / "loss.png", y="Loss"))


# ---------------------------------------------------------------------------- record_results
def test_record_results_columns_csv_tensorboard_and_png(tmp_path, quiet_logger):
    log_dir = tmp_path / "run"
    score_file = log_dir / "progress.csv"
    quiet_logger.add_tabular_output(score_file)
    quiet_logger.add_tensorboard_output(log_dir)
    total_epi = total_step = 0
    for it in range(3):
        result_dict = {
            "PolLoss": [torch.tensor(float(it), requires_grad=True), torch.tensor(1.0)],
            "VfLoss": np.array([0.5, 1.5]),
            "new_kl_beta": torch.tensor(0.5 * (it + 1)),  # a scalar: its value is recorded
            "kl_mean": 0.01,
            "Empty": [],  # nothing to record
        }
        rewards = [float(it), float(it) + 2.0]
        step = 200
        total_epi += len(rewards)
        total_step += step
        png = quiet_logger.record_results(
            log_dir, result_dict, score_file, total_epi, step, total_step, rewards, "Test"
        )

    header, rows = read_csv(score_file)
    stats = ["Average", "Std", "Median", "Min", "Max"]
    assert header == (
        [f"PolLoss{s}" for s in stats]
        + [f"VfLoss{s}" for s in stats]
        + ["new_kl_beta", "kl_mean"]
        + [f"Reward{s}" for s in stats]
        + ["EpisodePerIter", "TotalEpisode", "StepPerIter", "TotalStep"]
    )
    last = rows[-1]
    assert float(last["PolLossAverage"]) == 1.5
    assert float(last["VfLossStd"]) == 0.5
    assert float(last["new_kl_beta"]) == 1.5
    assert float(last["RewardAverage"]) == 3.0
    assert float(last["RewardMin"]) == 2.0
    assert float(last["RewardMax"]) == 4.0
    assert [int(r["TotalStep"]) for r in rows] == [200, 400, 600]
    assert [int(r["TotalEpisode"]) for r in rows] == [2, 4, 6]
    assert int(last["StepPerIter"]) == 200 and int(last["EpisodePerIter"]) == 2

    assert png == str(log_dir / "learning_curve.png")
    assert_valid_png(png)
    # TensorBoard steps are the total steps, so curves line up with the CSV's x axis.
    assert read_scalars(log_dir)["RewardAverage"] == [(200, 1.0), (400, 2.0), (600, 3.0)]


def test_record_results_registers_score_file_and_handles_no_rewards(tmp_path, quiet_logger):
    score_file = tmp_path / "progress.csv"
    png = quiet_logger.record_results(tmp_path, {"Loss": [1.0]}, score_file, 0, 10, 10)
    assert png is None
    assert quiet_logger.tabular_outputs == [str(score_file)]
    header, rows = read_csv(score_file)
    assert "RewardAverage" not in header and rows[0]["TotalStep"] == "10"


# ---------------------------------------------------------------------------- default + progress
def test_module_functions_use_the_default_logger(tmp_path):
    mine = Logger(stdout=False)
    previous = logger.set_logger(mine)
    try:
        assert logger.get_logger() is mine
        score_file = tmp_path / "progress.csv"
        logger.add_tabular_output(score_file)
        logger.log("via module")
        logger.record_tabular("a", 1)
        logger.dump_tabular()
        logger.record_results(tmp_path, {}, score_file, 1, 5, 5, rewards=[1.0])
        logger.remove_tabular_output(score_file)
        header, rows = read_csv(score_file)
        assert header[0] == "a" and "RewardAverage" in header and len(rows) == 2
    finally:
        logger.set_logger(previous)
        mine.close()
    assert logger.get_logger() is previous
    with pytest.raises(TypeError, match="Logger"):
        logger.set_logger("not a logger")


@pytest.mark.parametrize("disable", [True, False])
def test_progress_bar(disable, tmp_path):
    with open(tmp_path / "bar.txt", "w") as f:
        with progress(total=4, desc="train", disable=disable, file=f) as bar:
            for _ in range(2):
                bar.update(2)
                bar.set_postfix(loss=0.5)
    assert bar.total == 4
    text = (tmp_path / "bar.txt").read_text()
    if disable:
        assert text == ""
    else:
        assert bar.n == 4
        assert "train" in text and "4/4" in text and "loss=0.5" in text


def test_a_run_killed_while_saving_models_keeps_the_previous_files(tmp_path):
    """A real process saving a large module in a loop (as Run.record does every iteration)
    is killed at an arbitrary moment: the file holds one whole iteration's weights."""
    (tmp_path / "models").mkdir()
    script = textwrap.dedent(
        f"""
        import torch
        from machina import logger
        net = torch.nn.Linear(4000, 4000)
        for i in range(1000):
            with torch.no_grad():
                net.weight.fill_(i)
            logger.save_models({str(tmp_path)!r}, pol=net)
            print(i, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline()  # one save is complete
        time.sleep(0.3)  # ... and a later one is being written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    weight = torch.load(tmp_path / "models" / "pol_last.pt")["weight"]
    assert weight.shape == (4000, 4000) and bool((weight == weight[0, 0]).all())


def test_start_run_and_save_models_make_a_run_folder(tmp_path):
    previous = logger.get_logger()
    try:
        score_file = logger.start_run(tmp_path / "run")
        logger.record_tabular("TotalStep", 5)
        logger.dump_tabular(step=5)
        lin = torch.nn.Linear(2, 1)
        logger.save_models(tmp_path / "run", pol=lin, log_alpha=torch.ones((), requires_grad=True))
        logger.get_logger().close()
    finally:
        logger.set_logger(previous)
    assert score_file == str(tmp_path / "run" / "progress.csv")
    assert (tmp_path / "run" / "progress.csv").read_text().startswith("TotalStep")
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run").iterdir())
    loaded = torch.load(tmp_path / "run" / "models" / "pol_last.pt")
    assert torch.equal(loaded["weight"], lin.weight)
    assert float(torch.load(tmp_path / "run" / "models" / "log_alpha_last.pt")) == 1.0
