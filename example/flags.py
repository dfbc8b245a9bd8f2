"""argparse types shared by the examples: a count of 0 or less is refused by the parser,
which names the flag (``argument --epoch_per_iter: expected a positive integer, got '0'``)
before any environment, network or run folder is made. Without it such a value trained on
nothing (``--epoch_per_iter 0``), built networks of no hidden unit (``--h_size 0``), or
failed later naming a library argument the user never typed (``--steps_per_iter 0``)."""

from __future__ import annotations

import argparse
import math


def _int(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``text`` as an int >= 1 (``type=`` of a count flag)."""
    return _int(text, 1, "a positive integer")


def interval(text: str) -> int:
    """``text`` as an int >= 0 (``type=`` of an interval flag: ``--eval_interval``,
    ``--checkpoint_interval``); 0 means every iteration, passed to ``logger.Run`` as None
    (``args.eval_interval or None``). A negative one is refused: ``Run`` failed on it, and
    on 0, with a traceback after the run folder was opened."""
    return _int(text, 0, "an integer >= 0 (0: every iteration)")


def nonneg_int(text: str) -> int:
    """``text`` as an int >= 0 (``type=`` of a count that may be none: ``--random_steps``,
    ``--explore_steps``, ``--max_minibatches``; a negative one acted as 0, silently)."""
    return _int(text, 0, "an integer >= 0")


def _float(text: str, ok, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """``text`` as a finite float > 0 (``--max_kl``: 0 or less made no step, silently)."""
    return _float(text, lambda v: v > 0, "a positive number")


def nonneg_float(text: str) -> float:
    """``text`` as a finite float >= 0 (``--target_noise_clip``: a negative clip moved every
    target action, silently)."""
    return _float(text, lambda v: v >= 0, "a number >= 0")


def probability(text: str) -> float:
    """``text`` as a float in [0, 1] (``--eps_end``: outside, the run failed thousands of
    steps in, naming the library's argument)."""
    return _float(text, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def unit_interval(text: str) -> float:
    """``text`` as a float in [0, 1] (``--gamma``, ``--lam``, ``--init_beta``: outside, the
    returns or importance weights were wrong, silently, or the run failed late)."""
    return _float(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def polyak_rate(text: str) -> float:
    """``text`` as a float in (0, 1] (``--tau``: 0 never moved the target networks, so the
    run trained on its first random targets, silently; outside [0, 1] it failed after the
    first gradient step, naming the library's argument)."""
    return _float(text, lambda v: 0 < v <= 1, "a number in (0, 1]")
