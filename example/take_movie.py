"""Render a trained policy to video files with gymnasium's RecordVideo.

    python example/run_ppo.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper
    python example/take_movie.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper

Loads the policy that ``logger.save_models`` wrote (``--log``/models/pol_last.pt, as
example/run_ppo.py saves it) and plays
``--num_epis`` episodes in an environment made with ``render_mode="rgb_array"`` and wrapped in
``gymnasium.wrappers.RecordVideo``, which records every episode, as
``GymEnv(record_video=True)`` does for a sampler. One episode is written to ``--out``
(default ``--log``/movie.mp4); with more, episode ``i`` goes to ``OUT-episode-i.mp4``.
Needs moviepy (and pygame for the classic-control tasks):
``pip install torch==2.13.0 -e ".[video]"``.

The policy is rebuilt with the run's own settings, read from ``--log``/args.json (written by
run_ppo.py): ``rnn``, ``c2d``, ``h_size``, ``activation``, ``sde_sample_freq`` (a gSDE
policy, as the Hopper entry of example/hyperparams.py trains) and ``sde_per_env_noise``,
``squash_mean`` (False: the linear mean of the HalfCheetah entry) and ``normalize_ob``,
whose statistics (``--log``/models/prepro_last.pt) normalise the observations the policy
sees. A flag given on the command line wins over the file; without the file, the flags
alone describe the policy.
"""

import argparse
import os

import numpy as np
import torch
from flags import positive_int
from gymnasium.wrappers import RecordVideo
from run_settings import add_policy_flags, fill_from_run, load_run_prepro, make_run_pol

from machina.envs import C2DEnv, GymEnv

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--env_name",
    default=None,
    help="any gymnasium id (default: the run's, else HopperBulletEnv-v0)",
)
parser.add_argument("--log", default="runs/ppo", help="run folder holding models/")
parser.add_argument("--pol", default=None, help="policy file (default: LOG/models/pol_last.pt)")
parser.add_argument("--out", default=None, help="video file (default: LOG/movie.mp4)")
add_policy_flags(parser)
parser.add_argument("--num_epis", type=positive_int, default=1, help="episodes to record")
parser.add_argument(
    "--max_steps", type=positive_int, default=1000, help="steps at most per episode"
)
parser.add_argument("--stochastic", action="store_true", help="sample actions, not the mode")
parser.add_argument("--fps", type=int, default=None, help="default: the environment's")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

# The run's settings fill in what the command line leaves open.
fill_from_run(args, args.log, "HopperBulletEnv-v0")

try:
    import moviepy  # noqa: F401  (RecordVideo writes the files with it)
except ImportError:
    raise SystemExit("take_movie.py needs moviepy: pip install -e '.[video]'") from None

out = os.path.abspath(args.out or os.path.join(args.log, "movie.mp4"))
video_dir, prefix = os.path.dirname(out), os.path.splitext(os.path.basename(out))[0]
os.makedirs(video_dir, exist_ok=True)

torch.set_num_threads(1)
env = RecordVideo(
    GymEnv(args.env_name, render_mode="rgb_array"),
    video_folder=video_dir,
    name_prefix=prefix,
    episode_trigger=lambda episode: True,  # every episode, not the default 0, 1, 8, 27...
    fps=args.fps,
)
if args.c2d:
    env = C2DEnv(env)
pol = make_run_pol(
    env.observation_space,
    env.action_space,
    args,
    args.pol or os.path.join(args.log, "models", "pol_last.pt"),
)
prepro = load_run_prepro(env.observation_space, args, args.log)
act = pol.forward if args.stochastic else pol.deterministic_ac_real

n_frames, returns = 0, []
for epi in range(args.num_epis):
    pol.reset()  # a recurrent policy starts each episode from its initial hidden state
    obs, _ = env.reset(seed=args.seed + epi)
    n_frames += 1  # RecordVideo records the reset frame and one per step
    ret = 0.0
    for _ in range(args.max_steps):
        # One observation as a batch of one (a sequence of one step when recurrent).
        ob = obs if prepro is None else prepro.prepro(obs).astype(np.float32)
        batch = ob[None, None] if args.rnn else ob[None]
        with torch.no_grad():
            ac_real, _, _ = act(batch)
        obs, rew, terminated, truncated, _ = env.step(ac_real.reshape(env.action_space.shape))
        n_frames += 1
        ret += float(rew)
        if terminated or truncated:
            break
    returns.append(ret)
env.close()  # writes the last episode's file

# RecordVideo numbers episodes from 0, one file each
videos = [os.path.join(video_dir, f"{prefix}-episode-{i}.mp4") for i in range(args.num_epis)]
if args.num_epis == 1:
    os.replace(videos[0], out)
    videos = [out]
print(f"{', '.join(videos)}: {n_frames} frames, episode returns {np.round(returns, 1).tolist()}")
