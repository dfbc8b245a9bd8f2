"""argparse types shared by the examples: a count of 0 or less is refused by the parser,
which names the flag (``argument --epoch_per_iter: expected a positive integer, got '0'``)
before any environment, network or run folder is made. Without it such a value trained on
nothing (``--epoch_per_iter 0``), built networks of no hidden unit (``--h_size 0``), or
failed later naming a library argument the user never typed (``--steps_per_iter 0``)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``text`` as an int >= 1 (``type=`` of a count flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def interval(text: str) -> int:
    """``text`` as an int >= 0 (``type=`` of an interval flag: ``--eval_interval``,
    ``--checkpoint_interval``); 0 means every iteration, passed to ``logger.Run`` as None
    (``args.eval_interval or None``). A negative one is refused: ``Run`` failed on it, and
    on 0, with a traceback after the run folder was opened."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 (0: every iteration), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 (0: every iteration), got {text!r}"
        )
    return value
