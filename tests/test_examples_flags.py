"""The examples' count flags are refused at parsing when not positive, and their rates,
discounts and fractions when out of range, naming the flag."""

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


def test_nonneg_int_unit_interval_and_polyak_rate_refuse_what_they_name():
    import argparse

    flags = _flags()
    assert flags.nonneg_int("0") == 0 and flags.nonneg_int("10000") == 10_000
    assert flags.unit_interval("0") == 0.0 and flags.unit_interval("1") == 1.0
    assert flags.polyak_rate("1") == 1.0 and flags.polyak_rate("0.005") == 0.005
    cases = [(flags.nonneg_int, t, "an integer >= 0") for t in ("-5", "-1", "0.5", "x")]
    cases += [(flags.unit_interval, t, r"a number in \[0, 1\]") for t in ("-0.1", "1.5", "nan")]
    cases += [(flags.polyak_rate, t, r"a number in \(0, 1\]") for t in ("0", "-0.01", "2", "inf")]
    for fn, text, expected in cases:
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected {expected}, got '"):
            fn(text)


# Flags of the same meaning in every example that has them, and the type that checks them:
# a discount or GAE lambda outside [0, 1], a Polyak rate of 0 (targets never move), a
# learning rate, clip range or gradient-norm bound <= 0 (no step, or a reversed one), and a
# negative warm-up / annealing length (acted as 0), all went through without a word.
RANGED_FLAGS = {
    "gamma": "unit_interval", "lam": "unit_interval", "tau": "polyak_rate",
    "clip_param": "positive_float", "max_grad_norm": "positive_float",
    "kl_targ": "positive_float", "random_steps": "nonneg_int", "explore_steps": "nonneg_int",
    "max_minibatches": "nonneg_int",
    **dict.fromkeys(["lr", "pol_lr", "vf_lr", "qf_lr", "alpha_lr", "discrim_lr", "dm_lr",
                     "ppo_pol_lr", "sac_pol_lr"], "positive_float"),
}  # fmt: skip


def _flag_types(path: str) -> dict[str, str]:
    """Flag (without dashes) -> the name of its ``type=`` in ``path`` ('' when none)."""
    types = {}
    for node in ast.walk(ast.parse(open(path).read())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        kind = [getattr(k.value, "id", "") for k in node.keywords if k.arg == "type"]
        if names:
            types[names[0].lstrip("-")] = kind[0] if kind else ""
    return types


def test_every_example_checks_its_rates_discounts_and_lengths():
    scripts = sorted(f for f in os.listdir(EXAMPLE_DIR) if f.endswith(".py"))
    wrong = {}
    for script in scripts:
        types = _flag_types(os.path.join(EXAMPLE_DIR, script))
        for flag, expected in RANGED_FLAGS.items():
            if flag in types and types[flag] != expected:
                wrong[f"{script} --{flag}"] = (types[flag], expected)
    assert not wrong


def test_every_hyperparams_table_value_passes_its_flags_check():
    """The table's entries become parser defaults, which argparse does not pass through
    ``type=``: each value is checked here by its flag's own type instead."""
    import sys

    sys.path.insert(0, EXAMPLE_DIR)
    try:
        import hyperparams
    finally:
        sys.path.remove(EXAMPLE_DIR)
    flags = _flags()
    checked = 0
    for algo, script in (("ppo", "run_ppo.py"), ("sac", "run_sac.py"), ("td3", "run_td3.py")):
        types = _flag_types(os.path.join(EXAMPLE_DIR, script))
        for env_id, entry in hyperparams.TABLE[algo].items():
            for name, value in entry.items():
                check = getattr(flags, types.get(name, ""), None)
                if check is None or isinstance(value, bool):
                    continue
                assert check(str(value)) == value, (algo, env_id, name, value)
                checked += 1
    assert checked > 50


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
        # values that trained silently (no warm-up, a discount above 1, a run "solved" at
        # once); the rest of the ranged flags are checked by type (RANGED_FLAGS)
        ("run_sac.py", ["--random_steps", "-5"], "--random_steps: expected an integer >= 0"),
        ("run_ddpg.py", ["--gamma", "1.5"], "argument --gamma: expected a number in [0, 1]"),
        ("run_teacher_distill.py", ["--solve_fraction", "0"], "--solve_fraction: expected a"),
    ],
)
def test_example_refuses_a_bad_flag_before_running(tmp_path, script, args, message):
    cmd = example_cmd(script, *args, "--log", tmp_path / "run")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
