"""Adversarial inverse reinforcement learning from saved expert episodes.

    python example/make_expert_epis.py --deterministic \\
        --pol_path runs/ppo_cartpole/models/pol_last.pt
    python example/run_airl.py --expert_path runs/expert_epis/CartPole-v1_100epis.npz

``run_gail.py --method airl``, with ``runs/airl`` as the default ``--log``: the same flags
(``--rew_type rew`` or ``adv``, ``--rl_type``, ...); see run_gail.py for the loop.
"""

import os
import runpy
import sys

# Flags given on the command line come after these defaults, so they win (argparse keeps the
# last value of a repeated option).
sys.argv = [sys.argv[0], "--method", "airl", "--log", "runs/airl", *sys.argv[1:]]
runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_gail.py"), run_name="__main__"
)
