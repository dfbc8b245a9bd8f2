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
