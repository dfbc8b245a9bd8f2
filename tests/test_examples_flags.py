"""The examples' count flags are refused at parsing when not positive, naming the flag."""

import ast
import importlib.util
import os
import subprocess

import pytest
from conftest import EXAMPLE_DIR, example_cmd

# Flags that count something (steps, epochs, units, environments, episodes): 0 or less means
# nothing sensible in any example. Flags where 0 means "off" / "every time" are not here
# (--eval_interval, --checkpoint_interval, --max_minibatches, --sde_sample_freq, ...).
COUNT_FLAGS = {
    "h_size", "max_steps", "batch_size", "steps_per_iter", "num_envs", "eval_epis",
    "replay_size", "epoch_per_iter", "num_parallel", "num_threads", "rnn_batch_size",
    "num_epis", "epoch", "discrim_batch_size", "vf_epoch", "nstep", "seq_length",
}  # fmt: skip


def _flags():
    spec = importlib.util.spec_from_file_location("flags", os.path.join(EXAMPLE_DIR, "flags.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_positive_int_accepts_counts_and_refuses_the_rest():
    import argparse

    positive_int = _flags().positive_int
    assert positive_int("1") == 1 and positive_int("2048") == 2048
    for text in ("0", "-3", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer"):
            positive_int(text)


def test_float_flag_types_refuse_what_they_name():
    import argparse

    flags = _flags()
    assert flags.positive_float("0.01") == 0.01 and flags.nonneg_float("0") == 0.0
    assert flags.probability("1") == 1.0
    cases = [(flags.positive_float, "0"), (flags.nonneg_float, "-0.5"), (flags.probability, "2")]
    cases += [(f, t) for f in (flags.positive_float, flags.probability) for t in ("nan", "x")]
    for fn, text in cases:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            fn(text)


def _count_flags_typed_int(path: str) -> list[str]:
    """Count flags of ``path`` whose ``add_argument`` has ``type=int`` (not positive_int)."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        types = [k.value for k in node.keywords if k.arg == "type"]
        for name in names:
            if name.lstrip("-") in COUNT_FLAGS and types and getattr(types[0], "id", "") == "int":
                found.append(name)
    return found


def test_every_example_parses_its_count_flags_as_positive():
    scripts = sorted(f for f in os.listdir(EXAMPLE_DIR) if f.endswith(".py"))
    assert "run_ppo.py" in scripts
    unchecked = {s: _count_flags_typed_int(os.path.join(EXAMPLE_DIR, s)) for s in scripts}
    assert not {s: f for s, f in unchecked.items() if f}


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("run_ppo.py", ["--epoch_per_iter", "0"], "argument --epoch_per_iter: expected a positive"),
        ("run_ppo.py", ["--h_size", "0"], "argument --h_size: expected a positive integer"),
        ("run_sac.py", ["--steps_per_iter", "-1"], "argument --steps_per_iter: expected a posit"),
        ("run_ddpg.py", ["--nstep", "3"], "--nstep: n-step targets need --prioritized"),
        # values that trained silently on nothing or on wrong targets, or failed thousands
        # of steps in naming the library's argument
        ("run_trpo.py", ["--max_kl", "-1"], "argument --max_kl: expected a positive number"),
        ("run_td3.py", ["--target_noise_clip", "-1"], "--target_noise_clip: expected a number"),
        ("run_dqn.py", ["--eps_end", "1.5"], "--eps_end: expected a probability in [0, 1]"),
        ("run_r2d2_sac.py", ["--burn_in_length", "25"], "--burn_in_length: expected an integer"),
    ],
)
def test_example_refuses_a_bad_flag_before_running(tmp_path, script, args, message):
    cmd = example_cmd(script, *args, "--log", tmp_path / "run")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
