"""Logger.add_output: the output interface, and W&B / MLflow in their offline modes."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from machina.logger import (
    CsvOutput,
    Logger,
    MLflowOutput,
    Output,
    TensorBoardOutput,
    WandbOutput,
    namespaced,
)


class ListOutput:
    """A user's own output: keeps what it receives."""

    def __init__(self):
        self.rows, self.closed = [], False

    def write(self, row, step):
        self.rows.append((dict(row), step))

    def close(self):
        self.closed = True


def log_two_iterations(lg: Logger, tmp_path) -> None:
    """What a training script does: record_results each iteration, eval rows in between."""
    score_file = tmp_path / "progress.csv"
    for it in range(2):
        total_step = 100 * (it + 1)
        lg.record_results(
            tmp_path,
            {"PolLoss": [0.5, 0.25 * (it + 1)], "kl": 0.01},
            score_file,
            total_epi=4 * (it + 1),
            step=100,
            total_step=total_step,
            rewards=[1.0, 3.0],
        )
        lg.record_tabular("eval/RewardAverage", 10.0 + it)
        lg.record_tabular("Note", "text is not a metric")
        lg.dump_tabular(step=total_step)


def test_namespaces():
    assert namespaced("RewardAverage") == "train/RewardAverage"
    assert namespaced("eval/RewardAverage") == "eval/RewardAverage"
    assert namespaced("RewardAverage", None) == "RewardAverage"


def test_existing_outputs_are_outputs_and_own_outputs_work(tmp_path):
    csv_out = CsvOutput(tmp_path / "extra.csv")
    tb_out = TensorBoardOutput(tmp_path / "tb")
    mine = ListOutput()
    assert all(isinstance(o, Output) for o in (csv_out, tb_out, mine))
    lg = Logger(stdout=False)
    for output in (csv_out, tb_out, mine):
        assert lg.add_output(output) is output
    lg.add_output(mine)  # twice: once
    assert lg.outputs == [csv_out, tb_out, mine]
    log_two_iterations(lg, tmp_path)
    assert [step for _, step in mine.rows] == [100, 100, 200, 200]
    assert mine.rows[0][0]["RewardAverage"] == 2.0
    assert mine.rows[1][0] == {"eval/RewardAverage": 10.0, "Note": "text is not a metric"}
    with open(tmp_path / "extra.csv") as f:
        assert f.readline().startswith("PolLossAverage,")
    lg.remove_output(mine)
    assert mine.closed and lg.outputs == [csv_out, tb_out]
    lg.close()
    assert csv_out.closed and tb_out.closed and lg.outputs == []


def test_bad_outputs_are_refused():
    lg = Logger(stdout=False)
    with pytest.raises(TypeError, match="add_output: output needs write"):
        lg.add_output("wandb")
    with pytest.raises(ValueError, match="remove_output"):
        lg.remove_output(ListOutput())


def read_wandb_history(run_dir: str) -> list[tuple[int, dict[str, float]]]:
    """The history rows of an offline run's ``.wandb`` file: the LevelDB log format (32 KiB
    blocks of records with a 7-byte header: crc, length, type) after a 7-byte file header,
    each record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    pos, block, chunks, records = 7, 32768, [], []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a header never straddles blocks: the rest is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            records.append(payload)
        elif kind == 2:  # first
            chunks = [payload]
        elif kind == 3:  # middle
            chunks.append(payload)
        elif kind == 4:  # last
            records.append(b"".join([*chunks, payload]))
    rows = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            # a key with a "/" may be stored split, as nested_key
            names = [item.key or "/".join(item.nested_key) for item in record.history.item]
            items = {
                name: float(item.value_json)
                for name, item in zip(names, record.history.item, strict=True)
                if not name.startswith("_")  # wandb's own _step, _runtime, _timestamp
            }
            rows.append((record.history.step.num, items))
    return rows


def test_wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    lg = Logger(stdout=False)
    try:
        output = lg.add_output(
            WandbOutput(project="machina-test", mode="offline", dir=str(tmp_path))
        )
        log_two_iterations(lg, tmp_path)
        lg.close()
        assert output.closed
    finally:
        wandb.teardown()  # stop the wandb service process this test started
    (run_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    rows = read_wandb_history(run_dir)
    merged: dict[int, dict[str, float]] = {}
    for step, items in rows:
        merged.setdefault(step, {}).update(items)
    assert sorted(merged) == [100, 200]
    first = merged[100]
    assert first["train/RewardAverage"] == 2.0
    assert first["train/PolLossAverage"] == np.mean([0.5, 0.25])
    assert first["train/TotalStep"] == 100.0
    assert first["eval/RewardAverage"] == 10.0
    assert merged[200]["eval/RewardAverage"] == 11.0
    assert not any("Note" in key for key in first)


def test_mlflow_file_store(tmp_path, monkeypatch):
    """A local file store, no server. MLflow >= 3.7 keeps it in maintenance mode and refuses
    it unless MLFLOW_ALLOW_FILE_STORE=true; "sqlite:///mlflow.db" works without (its first
    use migrates a new database, ~10 s here, so it is not run in this suite)."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    lg = Logger(stdout=False)
    output = lg.add_output(MLflowOutput(tracking_uri=uri, run_name="test", params={"gamma": 0.99}))
    log_two_iterations(lg, tmp_path)
    lg.close()
    client, run_id = output.client, output.run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"gamma": "0.99"}
    history = client.get_metric_history(run_id, "train/RewardAverage")
    assert [(m.step, m.value) for m in history] == [(100, 2.0), (200, 2.0)]
    history = client.get_metric_history(run_id, "eval/RewardAverage")
    assert [(m.step, m.value) for m in history] == [(100, 10.0), (200, 11.0)]
    assert "train/Note" not in run.data.metrics
    # a second output continues the same run
    again = MLflowOutput(tracking_uri=uri, run_id=run_id)
    again.write({"eval/RewardAverage": 12.0}, step=300)
    again.close()
    history = client.get_metric_history(run_id, "eval/RewardAverage")
    assert [m.step for m in history] == [100, 200, 300]
