"""Render a trained policy to video files with gymnasium's RecordVideo.

    python example/run_ppo.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper
    python example/take_movie.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper

Loads the policy that ``logger.save_models`` wrote (``--log``/models/pol_last.pt, as
example/run_ppo.py saves it; pass the same ``--rnn``, ``--c2d`` and ``--h_size``) and plays
``--num_epis`` episodes in an environment made with ``render_mode="rgb_array"`` and wrapped in
``gymnasium.wrappers.RecordVideo``, which records every episode, as
``GymEnv(record_video=True)`` does for a sampler. One episode is written to ``--out``
(default ``--log``/movie.mp4); with more, episode ``i`` goes to ``OUT-episode-i.mp4``.
Needs moviepy: ``pip install machina[video]``.
"""

import argparse
import os

import numpy as np
import torch
from gymnasium.wrappers import RecordVideo

from machina.envs import C2DEnv, GymEnv
from machina.pols import make_pol

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="HopperBulletEnv-v0", help="any gymnasium id")
parser.add_argument("--log", default="runs/ppo", help="run folder holding models/")
parser.add_argument("--pol", default=None, help="policy file (default: LOG/models/pol_last.pt)")
parser.add_argument("--out", default=None, help="video file (default: LOG/movie.mp4)")
parser.add_argument("--rnn", action="store_true", help="the policy is an LSTM policy")
parser.add_argument("--c2d", action="store_true", help="the policy acts through C2DEnv")
parser.add_argument("--h_size", type=int, default=64, help="hidden units per layer")
parser.add_argument("--num_epis", type=int, default=1, help="episodes to record")
parser.add_argument("--max_steps", type=int, default=1000, help="steps at most per episode")
parser.add_argument("--stochastic", action="store_true", help="sample actions, not the mode")
parser.add_argument("--fps", type=int, default=None, help="default: the environment's")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

try:
    import moviepy  # noqa: F401  (RecordVideo writes the files with it)
except ImportError:
    raise SystemExit("take_movie.py needs moviepy: pip install 'machina[video]'") from None

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
pol = make_pol(env.observation_space, env.action_space, rnn=args.rnn, h_size=args.h_size)
pol_path = args.pol or os.path.join(args.log, "models", "pol_last.pt")
pol.load_state_dict(torch.load(pol_path, map_location="cpu"))
pol.eval()
act = pol.forward if args.stochastic else pol.deterministic_ac_real

n_frames, returns = 0, []
for epi in range(args.num_epis):
    pol.reset()  # a recurrent policy starts each episode from its initial hidden state
    obs, _ = env.reset(seed=args.seed + epi)
    n_frames += 1  # RecordVideo records the reset frame and one per step
    ret = 0.0
    for _ in range(args.max_steps):
        # One observation as a batch of one (a sequence of one step when recurrent).
        batch = obs[None, None] if args.rnn else obs[None]
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
