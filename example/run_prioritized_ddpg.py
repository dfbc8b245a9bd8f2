"""DDPG on prioritised experience replay, any gymnasium task with a Box action space.

    python example/run_prioritized_ddpg.py --env_name Pendulum-v1 --log runs/pddpg_pendulum

``run_ddpg.py --prioritized``, with ``runs/prioritized_ddpg`` as the default ``--log``: the
same flags (``--mode``, ``--alpha``, ``--init_beta``, ``--beta_step``, ``--nstep``,
``--resume``, ...); see run_ddpg.py for the loop.
"""

import os
import runpy
import sys

# Flags given on the command line come after these defaults, so they win (argparse keeps the
# last value of a repeated option).
sys.argv = [sys.argv[0], "--prioritized", "--log", "runs/prioritized_ddpg", *sys.argv[1:]]
runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_ddpg.py"), run_name="__main__"
)
