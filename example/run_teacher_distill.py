"""On-policy teacher distillation: a small student learns a trained teacher's actions.

    python example/run_ppo.py --env_name CartPole-v1 --log runs/ppo_cartpole
    python example/run_teacher_distill.py --teacher_path runs/ppo_cartpole/models/pol_last.pt

The student samples its own episodes; on their states it minimises KL(teacher || student)
(``on_pol_teacher_distill.train``), so it is corrected where it actually goes. It never sees
a reward. Without ``--teacher_path`` a PPO teacher is first trained here for
``--teacher_steps`` env steps. Writes progress.csv (``EvalReturn`` of the student,
``TeacherReturn``), TensorBoard events, learning_curve.png and the student (models/) into
``--log``.

Every iteration (or every ``--checkpoint_interval`` student env steps, and at the end) the
whole run is saved in ``--log`` (student, teacher and its return, optimiser, the sampler's
RNGs, the global RNGs and the counters). A stopped run continues bit for bit from its newest
checkpoint, with the same other arguments (``--max_steps`` may grow, the teacher file may
move); the teacher is neither trained nor loaded again::

    python example/run_teacher_distill.py --resume runs/teacher_distill
"""

import argparse
import os

import numpy as np
import torch
from flags import interval, positive_float, positive_int
from run_settings import run_settings

from machina import logger
from machina.algos import on_pol_teacher_distill, ppo_clip
from machina.envs import GymEnv
from machina.nets import HIDDEN_ACTIVATIONS
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--log", default="runs/teacher_distill", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--teacher_path", default=None, help="teacher state_dict (run_ppo.py's)")
parser.add_argument(
    "--teacher_h_size",
    type=positive_int,
    default=None,
    help="teacher hidden units (the teacher run's --h_size, else 64)",
)
parser.add_argument(
    "--teacher_activation",
    choices=sorted(HIDDEN_ACTIVATIONS),
    default=None,
    help="the teacher's hidden activation (the teacher run's --activation, else relu)",
)
parser.add_argument(
    "--teacher_steps", type=positive_int, default=30_000, help="PPO steps if no path"
)
parser.add_argument("--student_h_size", type=positive_int, default=16, help="student hidden units")
parser.add_argument("--num_envs", type=positive_int, default=8, help="environments sampled at once")
parser.add_argument(
    "--max_steps", type=positive_int, default=20_000, help="student env-step budget"
)
parser.add_argument("--steps_per_iter", type=positive_int, default=1000)
parser.add_argument("--epoch_per_iter", type=positive_int, default=5)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--lr", type=positive_float, default=3e-3)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument(
    "--solve_fraction",
    type=positive_float,
    default=0.95,
    help="stop within (1 - this) x |teacher's return| of the teacher's return (> 0; 1: at "
    "the teacher's return, above 1: beyond it)",
)
parser.add_argument("--num_threads", type=positive_int, default=1, help="torch threads")
parser.add_argument(
    "--checkpoint_interval",
    type=interval,
    default=None,
    help="env steps between checkpoints (default: every iteration)",
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)


def teacher_run_settings(path: str | None, parser: argparse.ArgumentParser) -> dict:
    """The settings of the run whose ``models/`` holds the teacher ``path`` ({} for a file
    elsewhere); a parser error for a teacher this script cannot feed: the student's raw
    observations would reach a teacher trained on normalised or discretised ones, or an LSTM
    (it acted on them without a word, CartPole's teacher returning 69 instead of 401)."""
    if path is None or os.path.basename(os.path.dirname(os.path.abspath(path))) != "models":
        return {}
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    settings = run_settings(run_dir)
    unsupported = [f"--{name}" for name in ("normalize_ob", "c2d", "rnn") if settings.get(name)]
    if unsupported:
        parser.error(
            f"--teacher_path: the teacher's run ({run_dir}) used {', '.join(unsupported)}; "
            "this script gives the teacher the student's raw observations and actions and "
            "cannot distil such a teacher"
        )
    return settings


args = parser.parse_args()
teacher_settings = teacher_run_settings(args.teacher_path, parser)
if args.teacher_h_size is None:
    args.teacher_h_size = teacher_settings.get("h_size", 64)
if args.teacher_activation is None:
    args.teacher_activation = teacher_settings.get("activation", "relu")

torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
ob_space, ac_space = env.observation_space, env.action_space
teacher = make_pol(
    ob_space,
    ac_space,
    h_size=args.teacher_h_size,
    activation=args.teacher_activation,
    sde_sample_freq=teacher_settings.get("sde_sample_freq") or None,
    squash_mean=teacher_settings.get("squash_mean"),
)
student = make_pol(ob_space, ac_space, h_size=args.student_h_size)
sampler = EpiSampler(env, student, num_envs=args.num_envs, seed=args.seed)


def mean_return(epis):
    return float(np.mean([np.sum(epi["rews"]) for epi in epis]))


def make_teacher() -> float:
    """Load or train the teacher; its deterministic return."""
    if args.teacher_path is not None:
        teacher.load_state_dict(torch.load(args.teacher_path, map_location="cpu"))
    else:  # trained with PPO
        vf = make_vf(ob_space, h_size=args.teacher_h_size, activation=args.teacher_activation)
        optim_pol = torch.optim.Adam(teacher.parameters(), 1e-3)
        optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
        step = 0
        while step < args.teacher_steps:
            traj = Traj()
            traj.add_epis(sampler.sample(teacher, max_steps=1024))
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, 0.99)
            traj = ef.compute_advs(traj, 0.99, 0.95)
            traj = ef.centerize_advs(traj)
            traj.register_epis()
            ppo_clip.train(traj, teacher, vf, optim_pol, optim_vf, 10, 256, log_enable=False)
            step += traj.num_step
    return mean_return(sampler.sample(teacher, max_epis=args.eval_epis, deterministic=True))


optim_student = torch.optim.Adam(student.parameters(), args.lr)
run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    "distill",
    title=args.env_name,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    resumable=("teacher_path",),
    checkpoint_interval=args.checkpoint_interval or None,
)
teacher_return = torch.tensor(0.0, dtype=torch.float64)
state = dict(student=student, teacher=teacher, teacher_return=teacher_return)
state.update(optim_student=optim_student, sampler=sampler)
with run:
    if not run.restore(**state):
        teacher_return.fill_(make_teacher())
    print(f"teacher deterministic return: {float(teacher_return):.1f}")
    # within a fraction of the teacher's return, also when returns are negative (Pendulum's
    # 0.95 x -1185 would ask the student to beat the teacher)
    run.solve_return = float(teacher_return) - (1.0 - args.solve_fraction) * abs(
        float(teacher_return)
    )
    while not run.done:
        epis = sampler.sample(student, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        result_dict = on_pol_teacher_distill.train(
            traj,
            student,
            teacher,
            optim_student,
            epoch=args.epoch_per_iter,
            batchsize=min(args.batch_size, traj.num_step),
            log_enable=False,
        )
        result_dict["TeacherReturn"] = float(teacher_return)
        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(student, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=student, teacher=teacher),
            kl=float(np.mean(result_dict["S_Pol_loss"])),
            checkpoint=state,
        )

sampler.close()
