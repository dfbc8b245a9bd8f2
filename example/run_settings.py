"""A trained run's policy, rebuilt from the settings its script saved (run_ppo.py's
``LOG/args.json``, else the settings every ``logger.Run`` example keeps in its checkpoints:
run_trpo.py, run_vpg.py, ...), for the scripts that use the policy afterwards: take_movie.py
and make_expert_epis.py.

A setting given on the command line wins over the run's; without either, the defaults below
(run_ppo.py's) describe the policy.
"""

from __future__ import annotations

import argparse
import json
import os

import gymnasium as gym
import torch
from flags import positive_int

from machina.checkpoint import read_extra
from machina.nets import HIDDEN_ACTIVATIONS
from machina.pols import make_pol
from machina.prepro import BasePrePro

# (name, default): what make_pol and the observation prepro were built with
POLICY_SETTINGS = (
    ("rnn", False),
    ("c2d", False),
    ("h_size", 64),
    ("activation", "relu"),
    ("sde_sample_freq", None),
    ("squash_mean", None),  # make_pol decides, as for the scripts that do not set it
    ("sde_per_env_noise", False),
    ("normalize_ob", False),
    ("ob_clip", 10.0),
)


def add_policy_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that describe the policy, each None unless given (``fill_from_run``)."""
    parser.add_argument("--rnn", action="store_true", default=None, help="an LSTM policy")
    parser.add_argument(
        "--c2d", action="store_true", default=None, help="acts through C2DEnv (discretised)"
    )
    parser.add_argument(
        "--h_size", type=positive_int, default=None, help="hidden units per layer (64)"
    )
    parser.add_argument(
        "--activation", choices=sorted(HIDDEN_ACTIVATIONS), default=None, help="hidden (relu)"
    )
    parser.add_argument(
        "--sde_sample_freq", type=int, default=None, help="a gSDE policy (GaussianSDEPol); 0: not"
    )
    parser.add_argument(
        "--squash_mean",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the Gaussian mean through tanh (run_ppo.py's default) or linear (--no-squash_mean)",
    )
    parser.add_argument(
        "--normalize_ob",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="normalise observations with LOG/models/prepro_last.pt (the run's setting)",
    )


def run_settings(log: str) -> dict:
    """The settings the run in ``log`` was started with: its args.json, else those of its
    newest checkpoint; {} when it has neither."""
    path = os.path.join(log, "args.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    try:
        return dict(read_extra(log).get("settings") or {})
    except (FileNotFoundError, ValueError):
        return {}


#: the examples whose policy is not make_pol's (the others', and a user's script's, may be)
OTHER_POLICY_SCRIPTS = (
    "run_ddpg.py", "run_diayn.py", "run_dqn.py", "run_mpc.py", "run_ppo_sac.py",
    "run_prioritized_ddpg.py", "run_qtopt.py", "run_r2d2_sac.py", "run_sac.py", "run_svg.py",
    "run_td3.py",
)  # fmt: skip


def check_run_script(log: str) -> None:
    """SystemExit naming the script when the run in ``log`` was made by one whose policy is
    not make_pol's (run_sac.py's TanhGaussianPol loaded into a GaussianPol silently, DDPG's
    and DQN's failed on their state dicts); runs saved before their checkpoints named the
    script are not checked."""
    try:
        script = read_extra(log).get("script")
    except (FileNotFoundError, ValueError):
        return
    if script in OTHER_POLICY_SCRIPTS:
        raise SystemExit(
            f"--log: {log} is a run of {script}, whose policy make_pol does not rebuild "
            "(take_movie.py and make_expert_epis.py rebuild make_pol's policies: run_ppo.py's, "
            "run_trpo.py's, run_vpg.py's, the imitation examples'...)"
        )


def fill_from_run(args: argparse.Namespace, log: str | None, env_default: str) -> None:
    """Set each of ``POLICY_SETTINGS`` and ``env_name`` that ``args`` leaves None (or
    lacks) from the run in ``log``, else to its default (``env_default`` for the env)."""
    if log:
        check_run_script(log)
    run_args = run_settings(log) if log else {}
    for name, default in (("env_name", env_default),) + POLICY_SETTINGS:
        if getattr(args, name, None) is None:
            setattr(args, name, run_args.get(name, default))
    if args.sde_sample_freq == 0:
        args.sde_sample_freq = None


def make_run_pol(
    observation_space: gym.Space, action_space: gym.Space, args: argparse.Namespace, path: str
):
    """The policy of ``args``' settings, with the parameters saved at ``path``, in eval mode."""
    pol = make_pol(
        observation_space,
        action_space,
        rnn=args.rnn,
        h_size=args.h_size,
        activation=args.activation,
        sde_sample_freq=args.sde_sample_freq,
        squash_mean=args.squash_mean,
        sde_per_env_noise=args.sde_per_env_noise,
    )
    pol.load_state_dict(torch.load(path, map_location="cpu"))
    return pol.eval()


def load_run_prepro(
    observation_space: gym.Space, args: argparse.Namespace, log: str | None
) -> BasePrePro | None:
    """The run's observation statistics (``log``/models/prepro_last.pt) when it normalised
    its observations (``args.normalize_ob``), else None."""
    if not args.normalize_ob:
        return None
    if not log:
        raise SystemExit("--normalize_ob: the statistics are read from a run folder; give --log")
    path = os.path.join(log, "models", "prepro_last.pt")
    if not os.path.exists(path):
        raise SystemExit(
            f"--normalize_ob: {path} is missing: the run did not normalise its observations"
        )
    prepro = BasePrePro(observation_space, clip=args.ob_clip)
    prepro.load_state_dict(torch.load(path))
    return prepro


def describe(args: argparse.Namespace) -> str:
    """The policy settings in use, one line."""
    return ", ".join(f"{name}={getattr(args, name)}" for name, _ in POLICY_SETTINGS)
