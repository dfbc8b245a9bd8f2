"""Learning on the PyBullet locomotion tasks: machina against stable-baselines3, side by side.

    python example/benchmarks/bench_bullet.py                       # every run, resumable
    python example/benchmarks/bench_bullet.py --algos ppo --envs HopperBulletEnv-v0 --seeds 0
    python example/benchmarks/bench_bullet.py --quick               # smoke run, new /tmp folder
    python example/benchmarks/bench_bullet.py --report              # table + plots from CSV

What runs: PPO for 500k env steps, SAC and TD3 for 100k env steps, on HopperBulletEnv-v0 and
HalfCheetahBulletEnv-v0, seeds 0, 1, 2, each run once with machina and once with
stable-baselines3, alternating who goes first (machina first on even seeds). Every run uses
one torch thread and one process (machina's sampler steps its environments in-process).

Protocol, the same for both:

- every ``EVAL_EVERY[algo]`` env steps (PPO 25k, SAC / TD3 10k; checked when the policy has
  just been updated for machina, at the first env step past the mark for stable-baselines3),
  at step 0 and at the end of the budget, the policy plays ``EVAL_EPIS`` = 5 deterministic
  episodes on separate evaluation environments seeded ``10_000 + seed`` (observations
  normalised with the training statistics, frozen; raw rewards);
- each evaluation appends a row to the CSV at once (``assets/bullet_results.csv``): lib,
  algo, env, seed, budget, attempt, steps, wall_s (training wall-clock, evaluations
  excluded), cpu_s (the process's CPU seconds, evaluations excluded), eval_s and
  eval_cpu_s (spent in evaluations), eval_return (mean of the 5 episodes), eval_std,
  final (1 on the evaluation at the end of the budget), load1 (the machine's one-minute
  load average: other programs shared this 2-core machine while the committed results
  were measured, so wall-clock is noisy; CPU seconds less so);
- each process that runs (a piece of) a run appends one row to the sidecar
  ``assets/bullet_results_machines.csv`` at its first evaluation: the run's key, that
  evaluation's steps, the machine (CPU model and count, Python, torch) and, since session
  22, the installed versions of torch, numpy, gymnasium, pybullet and stable-baselines3 and
  machina's commit (``_harness.packages``). The sessions that made these results ran on
  different 2-core machines (Intel Xeon, AMD EPYC), and CPU seconds compare only on one
  machine; runs before session 11 were not recorded there;
- a same-machine check of the CPU ratios: short reruns of both libraries (``--budget
  20000 --csv assets/bullet_results_check.csv``), which ``--report`` compares with the
  same segment of the reported runs (``bullet_report.machine_check``);
- wall_s and cpu_s exclude evaluations and checkpoint writing, and stay cumulative over
  the pieces of a resumed run;
- resuming: a run whose ``final`` row is in the CSV is skipped. Every run is checkpointed
  at each evaluation into its own folder under ``--ckpt_dir`` (default ``bullet_ckpt``
  beside the repository, outside git; ``--ckpt_dir ''`` turns it off): machina through
  ``machina.checkpoint.save_run`` (networks, optimisers, observation prepro, reward
  normaliser, both samplers with their environments' RNGs, the replay ``Traj``, SAC's
  temperature, global RNGs, counters), stable-baselines3 with ``model.save``,
  ``VecNormalize.save``, ``save_replay_buffer`` and the global RNGs (at the first rollout
  start after the evaluation, when the model has trained on every step it counts). Each
  checkpoint is written into a temporary folder, renamed into place, then named in a
  ``latest`` file replaced atomically. Rerunning the same command continues a killed run
  from its last checkpoint under the same ``attempt`` id, so the CSV holds one continuous
  curve; the row of an evaluation is saved in the checkpoint and written to the CSV after
  it (or, if the process died in between, when the run is restored): exactly once. What
  a continuation redoes: the steps after the last checkpoint; stable-baselines3's
  environments start new episodes (they cannot be saved mid-episode), and pybullet's robots
  draw initial states from a RandomState that the sampler state does not hold, so neither
  library continues bit for bit here. The folder's name carries a hash of the CSV path
  and the overrides (``--set`` / ``--sb3_set``), so a tuning run never continues another
  configuration; a finished run deletes its folder. A run killed before its first
  checkpoint restarts with a new ``attempt``; ``--report`` uses the finished attempt of a
  run, or else its latest partial one (shown as partial).

stable-baselines3 runs rl-baselines3-zoo's hyperparameters for these ids (``SB3`` below,
from ``hyperparams/ppo.yml``, ``sac.yml``, ``td3.yml``), including its wrappers: PPO on 16
environments under ``VecNormalize`` (observations and rewards, gamma 0.99), gSDE, 256x256
ReLU nets, learning rate 3e-5, clip 0.4 (linearly decayed on Hopper), 512 steps per env per
rollout, 20 epochs of 128; SAC with gSDE, 400x300 nets, lr 7.3e-4 (linearly decayed on
Hopper), gamma 0.98, tau 0.02, 8 updates every 8 steps, 10k warm-up steps, 300k buffer;
TD3 with sb3-contrib's ``TimeFeatureWrapper`` (re-implemented here as
:class:`TimeFeature`, since sb3-contrib is not installed: remaining-time fraction appended
to the observation), 400x300 nets, lr 1e-3, gamma 0.98, Gaussian noise 0.1, one update
per step after each episode, 10k warm-up steps, 200k buffer. rl-zoo's linear schedules
decay over the ``total_timesteps`` given to ``learn``, i.e. over this benchmark's budget,
as ``rl_zoo3.train -n <budget>`` would.

machina runs its own train functions (``ppo_clip.train``, ``sac.train``, ``td3.train`` with
``EpiSampler``, ``Traj`` and ``epi_functional``) in the examples' loops with the settings of
``example/hyperparams.py``'s entries for these ids (what ``example/run_ppo.py
--env_name HopperBulletEnv-v0`` etc. use): PPO with ``machina.prepro.BasePrePro``
(observations, clip 10) and ``machina.prepro.RewardNormalizer`` (rewards), SAC and TD3 with
uniformly random actions for the first 10k steps.

How machina's entries were chosen (seeds 100+, never the reported 0-2), and what was
found where machina fell short, is in the section "Findings" at the end of this docstring.

Findings
--------
How machina's entries were chosen: not tuned on the reported seeds. PPO's first entry
("v1") was meant as the well-known MuJoCo recipe (Schulman et al. 2017, CleanRL's
``ppo_continuous_action``: 2048 steps, 10 epochs of 64, lr 3e-4, GAE 0.95, clip 0.2, 64x64
nets) on machina's parts (``BasePrePro`` for observations, ``RewardNormalizer`` for rewards,
TD(lambda) value targets, ReLU nets) but kept machina's initial log-std -1, 8 environments
and a constant lr; one sanity run on seed 100 (150k steps) showed it learning Hopper (eval
794 at 55k steps, 894 at 100k) before the reported runs began. Its reported runs fell far
short, and the tuning on seeds 100-101 below gave entry v2 (2 environments, initial log-std
0, annealed lr: CleanRL's recipe itself), with which the reported PPO runs were redone. SAC's
and TD3's entries take rl-zoo's gamma, tau, learning rates and 10k-step random warm-up,
with machina's 256x256 nets; one sanity run on seed 100 checked that the loop runs.

What the runs show so far (seed 0, Hopper; the CSV has every number):

- PPO: machina is far ahead early (794 at 50k env steps, where stable-baselines3 with rl-
  zoo's settings is at 82) and then stalls: from 150k steps on, its evaluations alternate
  between about 1010 (with a standard deviation of 1-3 over the 5 episodes) and collapses
  (416, 22); final 1013 at 500k (seed 1: 928 at 176k, the same shape). About 1010 with no
  spread is 1000 steps of Hopper's alive bonus (+1 per step) with almost no forward
  progress: the policy has learned to stand still, a known local optimum of the hopper
  tasks, and its mean action is brittle (a few updates later all 5 episodes fall within ~20
  steps). stable-baselines3 starts slowly (rl-zoo's lr 3e-5, gSDE with initial log-std -2
  and clip 0.4 are tuned for its 2M-step budget) but leaves that optimum at ~200k steps
  (1476 at 200k, 1825 at 425k). Likely causes on machina's side, in the order to test them
  on seeds 100+: exploration (state-independent Gaussian noise around a tanh-bounded mean,
  against gSDE's state-dependent noise), no annealing (constant lr 3e-4 and clip 0.2, where
  rl-zoo decays Hopper's clip range linearly to 0 and CleanRL anneals the lr), and the 64x64
  nets (a 256x256 run on seed 100 shows the same plateau and collapses: 913 at 100k, 351 at
  156k, 907 at 179k; so net size alone is not it). The estimators (truncation-aware GAE and
  TD(lambda) targets) and the normalisation (observations and rewards, as VecNormalize)
  match what stable-baselines3 does.
- PPO Hopper with 3 seeds (session 5): machina 829 [689, 1013] at 500k, every seed on the
  same plateau; stable-baselines3 1843 [1807, 1879] (2 seeds). Restarted runs reproduced
  the previous session's evaluations exactly (both libraries are deterministic per seed).
- PPO, machina's settings read against the recipes (session 5; code reading only, no CPU
  was free to measure; these runs still use the unchanged entry). Where machina's entry
  differs from CleanRL's ``ppo_continuous_action`` (which it claims to follow) and from
  SB3 / rl-zoo:

  1. initial log-std -1 (std 0.37; machina's ``LOG_STD_INIT``) against CleanRL's and SB3's
     default 0 (std 1): 2.7x less exploration noise from the start, and no entropy bonus
     to hold it up -- the first suspect for a policy that settles on standing still.
     rl-zoo's gSDE starts at -2 but scales by the features (state-dependent), so its noise
     is not comparable one to one. Flag: ``--log_std_init`` (``--set log_std_init=0``).
  2. no annealing: CleanRL decays the lr linearly to 0 over the run, rl-zoo decays
     Hopper's clip range; machina keeps lr 3e-4 and clip 0.2 to the end, which fits the
     late collapses (1010 -> 416 -> 22 -> 1011). Flags: ``--anneal_lr``, ``--anneal_clip``.
  3. iteration size: machina samples whole episodes and each of the 8 environments
     finishes its episode past its share (256 steps) of ``steps_per_iter``; once the
     hopper survives 1000 steps an iteration is ~8000 steps, not 2048 (eval marks 24k
     apart = 3 iterations), so the policy takes 4x fewer PPO iterations (trust-region
     steps) per env step than CleanRL's fixed 2048 on the plateau (SB3/rl-zoo: fixed 8192
     with 20 epochs). ``num_envs=2`` keeps iterations at <= ~4000. Untested.
  4. tanh-bounded mean (``PolHead``) against the linear mean of CleanRL and SB3 (actions
     clipped to the bounds in both): saturating actions get vanishing gradients through
     tanh. Kept as the library's default; ``squash_mean=False`` since session 15 (below).
  5. ReLU hidden layers (as rl-zoo) where CleanRL uses tanh; 64x64 as CleanRL where
     rl-zoo uses 256x256 (a 256x256 run stalled the same way, above).
  6. value lr 1e-3 (separate optimiser) against 3e-4 shared (CleanRL, SB3; with separate
     networks under Adam ``vf_coef`` hardly matters, the lr does); gradient norms clipped per
     network, not jointly; no value-loss clipping (as SB3; CleanRL clips).
  7. the same: orthogonal init with gain sqrt(2), 0.01 on the policy output and 1 on the
     value output (CleanRL; SB3's ``ortho_init``; rl-zoo turns it off for these ids),
     advantages normalised over the whole batch (SB3 / CleanRL: per minibatch; same in
     expectation), gamma 0.99 and lambda 0.95 (rl-zoo: 0.9), observation and reward
     clipping at 10, no entropy bonus (all three).

- PPO tuning (session 7; seeds 100 and 101, 300k steps each, one change at a time from
  the entry then in use, "v1"; every evaluation in ``assets/bullet_tuning.csv`` with its
  settings, beside v1's reported runs). Final deterministic returns:

  ============================================  ==============  ============  ==========
  settings                                      HalfCheetah     HalfCheetah   Hopper
                                                seed 100        seed 101      seed 100
  ============================================  ==============  ============  ==========
  v1 (8 envs, log-std -1, constant lr)          490             -186          743
  log_std_init=0                                1088                          695
  num_envs=2                                    -851                          980
  log_std_init=0, num_envs=2                    1336                          901
  log_std_init=0, num_envs=2, anneal_lr (v2)    1816            868           894
  v2 settings without tanh on the mean          1402 (1655 without anneal)    900
  rl-zoo's PPO settings without gSDE            -1214 @176k                   1000
  ============================================  ==============  ============  ==========

  HalfCheetah: the initial std (exploration) and the iteration size together, then lr
  annealing, move machina from ~500 to ~1800 at 300k on seed 100 (stable-baselines3's
  reported seeds are at 1578-1817 at 300k). Entry v2 (``example/hyperparams.py``) is that
  row: CleanRL's recipe (every other row is ``--set`` overrides of v1 and reruns as
  such). A mean without tanh (a linear mean clipped by the environment, as CleanRL and SB3
  have; measured with a temporary patch of ``machina_ppo``, not kept) is not better with
  annealing (1402 vs 1816), so the tanh-bounded mean stays. Hopper: every variant, rl-zoo's
  own PPO settings included (256x256, lr 3e-5, 20 epochs of 128, clip 0.4, log-std -2),
  stays on the standing-still plateau of ~900-1000;
  what rl-zoo runs and machina did not was gSDE (state-dependent exploration noise,
  resampled every 4 steps), the prime suspect for stable-baselines3 leaving that plateau at
  ~200k.
- gSDE (session 8-9; ``machina.pols.GaussianSDEPol``, ``--sde_sample_freq``): entry v2 with
  ``sde_sample_freq=4 log_std_init=-2`` (rl-zoo's two gSDE settings for these ids, all else
  v2), 500k steps, every evaluation in ``assets/bullet_tuning.csv``:

  ==========================  ============================================  =============
  task, seed                  gSDE: evaluations on the way -> final           v2 (no gSDE)
  ==========================  ============================================  =============
  Hopper, seed 100            1432 @101k, 1901 @152k, 2456 @277k -> 2568    894
  Hopper, seed 101            -> 2631                                       (not run)
  HalfCheetah, seed 100       548 @76k, ~600 from 200k on -> 587            1816 @300k
  ==========================  ============================================  =============

  On Hopper gSDE leaves the standing-still plateau on both tuning seeds, as it does for
  stable-baselines3, so Hopper's entry is v3 = v2 + gSDE (``--sde_sample_freq 0`` turns it
  off). On HalfCheetah it stalls at ~600 where plain noise reaches ~1800: HalfCheetah keeps
  v2. Walker2D was not tried (it keeps v2). The reported Hopper seeds 0-2 were rerun with
  v3 (v2's reported runs, 769 [739, 908], moved to the tuning CSV with that label).
  gSDE runs cost more CPU: machina's PPO Hopper took 506-631 s per 500k with gSDE against
  266-274 s with v2. Not the policy call: session 10 gave ``GaussianSDEPol`` the sampler's
  numpy fast path (~70 us a step against ~160 us on the torch path) and the reruns of seeds
  0-2 cost as much CPU. A profile of the entry's first 12k steps: the environment's
  ``step`` 0.62 ms CPU per env step (0.44-0.52 ms alone, zero or random actions, in
  ``HopperBulletEnv-v0`` without a policy), PPO's update 0.53 ms per env step.
  Session 11 corrected session 10's reading of that profile: the runs already used
  ``torch.optim.Adam(..., fused=True)`` (``machina_ppo`` below, as ``run_ppo.py``), so
  there is no fused-Adam saving left to take. The update, measured alone on a 4,096-step
  Hopper batch (10 epochs of 64, one torch thread, a loaded machine): 0.42-0.44 ms per env
  step with fused Adam, 0.51-0.58 ms with single-tensor Adam; per 64-step minibatch the
  policy's and the value's forward and backward passes take ~2 ms of the ~2.8 ms, and a
  bare 64x64 MLP's forward and backward at batch 64 alone costs ~0.5 ms here (torch's
  per-operator overhead, ~10-30 us per matmul, not arithmetic). Why v2's runs (standing
  still through most of their 500k steps) were cheaper was not measured; at the start of
  a run (untrained policies) both sample at ~0.56-0.59 ms per env step. With the
  environment alone at ~250 s per 500k, the <= 0.7x target against stable-baselines3's
  457 s seemed out of reach -- but that 457 s and machina's 608 s came from different
  sessions (machines and loads not recorded). Rerun in session 11 on one machine, both
  libraries, alternating: machina 426 s (returns identical to session 10's, to the digit)
  against stable-baselines3's 579 s: 0.74x, close to the target and missed.
- PPO HalfCheetah's shortfall (session 11). Entry v2's reported runs were level with
  stable-baselines3's per env step to ~450k and then missed (1,736 against 2,226): seed
  1 learned slowly (1,621), seed 2 lost one of its 5 final episodes (a fall ends an
  episode). Reading the evaluation marks (24k apart) showed v2's iterations on
  HalfCheetah were 4,000 steps, not the recipe's ~2,048: HalfCheetah's episodes run to
  the 1,000-step limit, each of the 2 environments passed its 1,024-step share inside its
  second episode, and whole-episode sampling finished that episode. Half as many policy
  updates per env step as intended, at the same epochs per sample. With
  ``steps_per_iter=2000`` (exactly one episode per environment) tuning seeds 100 and 101
  reached 1,827 and 1,803 at 300k, against v2's 1,816 and 868 (every evaluation in
  ``assets/bullet_tuning.csv``): HalfCheetah's entry v4 is v2 with 2000 steps per
  iteration. The cost per env step is unchanged (measured on one 8,000-step sample: 1.01
  and 1.00 ms per env step with 2000 and 2048, of which ~0.62 ms the environment), since
  the update's work scales with epochs times steps. The reported seeds were rerun with
  v4, and stable-baselines3's beside them on the same machine (CPU seconds differ between
  the machines these sessions ran on: the earlier runs' CPU columns are not comparable
  with later ones); the earlier runs of both moved to the tuning CSV with that label.
  Result: machina 1,729 [1,721, 2,272] against 2,357 [2,244, 2,378] at 0.71x the CPU
  seconds: still short. Seed 0 learned slowly and evenly (1,345 at 300k, 1,729 at the
  end, every final episode alike); seed 2 again lost one of its 5 final episodes to a
  fall (1,721 +- 550), as v2's seed 2 did, where stable-baselines3's evaluations never
  spread like that. Tested on tuning seeds 100 and 101 (v4, 500k; a scratch copy of this
  loop that also played 5 stochastic episodes and read the policy's std at every
  evaluation): the suspicion that the deterministic mean is brittle because the std stays
  large (it starts at 1, no entropy term) does not hold. The std shrinks on its own (per
  action dimension 0.25-0.51 at 500k), and from 200k on the deterministic episodes fell
  below 0.8x the evaluation's median less often than the stochastic ones (4 of 65 against
  10 of 65 on seed 100; 0 against 1 on seed 101). Final deterministic returns 1,974 and
  1,776: at 500k machina's PPO is simply behind stable-baselines3's on this task. Next to
  try, on seeds 100-101: rl-zoo's 256x256 networks (more CPU per update), 20 epochs, or
  lambda 0.92 / clip 0.4 one at a time.
- Session 12, PPO's CPU seconds. Where a 500k Hopper run's ~0.85 ms per env step went:
  the environment ~0.47 (random actions, no policy; the sampler with gSDE and the prepro
  adds ~0.04), PPO's update ~0.37-0.44 (10 epochs of 64-step minibatches, ~2.5-2.8 ms per
  minibatch for both networks). Two changes:

  1. the library: the policy-gradient losses (``lf.pg``, ``pg_clip``, ``pg_kl``,
     ``kl_old_new``) took the new distribution parameters from the policy's full forward
     pass, which also drew an action and converted it to numpy for the environment; they
     now call ``pol.pd_params`` (policies with only ``forward`` keep that path). In one
     process, alternating, 2,000-step batches: 0.370 -> 0.357 ms per env step (Hopper,
     gSDE), 0.376 -> 0.366 (HalfCheetah): 3%. Training no longer draws those actions from
     torch's global RNG, so runs from now on differ from earlier ones by the draw.
  2. Hopper's entry v5: v3 with minibatches of 128 (rl-zoo's size for these ids), half the
     optimiser steps, the update's CPU halved (0.44 -> 0.22 ms per env step). Tuning seeds
     100 and 101 at 500k: 2357 and 1547 (1924 at 450k), against v3's 2568 and 2631: some
     learning traded for CPU, still well above stable-baselines3's reported median (1,339).
     The reported seeds 0-2 were rerun with v5 (v3's runs moved to the tuning CSV).

- Session 12, PPO HalfCheetah (still short of stable-baselines3's 2,357 at 500k; v4's
  tuning seeds 100/101: 1974/1776). Tuning seeds 100/101 at 500k, every evaluation in the
  tuning CSV:

  =========================================  ===============  ===============  ========
  settings                                   seed 100         seed 101         CPU s
  =========================================  ===============  ===============  ========
  v4 (64x64, minibatches of 64)              1974             1776             531-573
  v4 + 256x256 nets                          2268             2043             679
  v4 + 256x256 nets, minibatches of 128      1737             2145             514-521
  rl-zoo's recipe with gSDE (below)          2055             1888             719-721
  =========================================  ===============  ===============  ========

  Wider networks learn faster (+~280 at 500k; 1194/1280 at 150k against 630/1015) but
  cost 1.2-1.3x the CPU seconds of v4's reported runs (the update of a 256x256 pair at
  batch 64 costs 0.65 ms per env step against 0.44); with minibatches of 128 they cost
  what v4 costs and learn as v4 does. No setting tried reaches stable-baselines3's return
  within 0.7x its CPU seconds. (The 256x256 runs ran before change 1 above, the others
  after.)

  Is it the recipe? machina with stable-baselines3's own settings for this id (rl-zoo's:
  gSDE with log-std -2 and the matrix redrawn every 4 steps, 256x256 nets, lr 3e-5 for
  both networks, constant, 20 epochs of 128-step minibatches, clip 0.4, lambda 0.9; 8
  environments of whole 1000-step episodes for rl-zoo's 16 x 512 = 8192 steps per
  rollout) reached 2055 and 1888 at 0.95x stable-baselines3's CPU seconds: no better
  than v4 (1974, 1776), so the recipe alone does not explain the gap. Left different:
  machina's orthogonal initialisation (rl-zoo turns it off for these ids), separate
  optimisers and gradient clipping per network, advantages normalised over the whole
  batch rather than per minibatch, observation statistics updated once per iteration
  rather than at every step. Nor is it the reported seeds' luck: stable-baselines3 on the
  tuning seeds 100 and 101 reached 2183 and 2269 (on seeds 0-2: 2244-2378), where
  machina's five v4 runs (seeds 0-2, 100, 101) span 1721-2272 with median 1776. Next to
  test, one at a time on seeds 100-101: advantages normalised per minibatch, one
  optimiser over both networks with one clip (SB3's), orthogonal initialisation off.
- Session 13, PPO HalfCheetah: those three, one at a time on v4, tuning seeds 100 and 101
  at 500k (every evaluation in the tuning CSV; the second and third were patches of this
  loop for the experiment, not kept):

  ===================================================  ========  ========  ===========
  settings                                             seed 100  seed 101  CPU s
  ===================================================  ========  ========  ===========
  v4                                                   1974      1776      531-573
  v4 + advantages standardised per minibatch (v6)      2449      2368      516-573
  v4 + one Adam over both nets, pg + 0.5 MSE, 1 clip   1994      2488      501-542
  v4 + torch's default init (no orthogonal init)       2165      1906      518-578
  v6 + the joint optimiser (``joint_step``)            2286      2335      495-497
  stable-baselines3 (rl-zoo's settings, session 12)    2183      2269      948
  ===================================================  ========  ========  ===========

  Advantages standardised within each 64-step minibatch (stable-baselines3's
  ``normalize_advantage``; machina normalised them once over the iteration's 2000 steps) is
  the one change that lifted both seeds, above stable-baselines3's on the same seeds, at the
  same CPU cost: ``ppo_clip.train(..., minibatch_norm_advs=True)``, run_ppo.py's
  ``--minibatch_norm_advs``, HalfCheetah's entry v6 (v4 + that). Why it matters this much
  was not measured; a likely part: with whole-batch normalisation a minibatch's mean
  advantage is random (64 of the 2,000 steps: a standard error of ~1/8 of the normalised
  scale), and a positive mean pulls every sampled action's likelihood up, a push on the
  log-std unrelated to which actions were good. SB3's joint optimiser (one optimiser step
  and one clip per minibatch; now ``ppo_clip.train(..., joint_step=True)``, run_ppo.py's
  ``--joint_step``) was mixed alone (1994, 2488) and, on top of v6, a little below v6 (2286,
  2335 against 2449, 2368) at ~5-10% less CPU: not taken into the entry. The reported seeds
  0-2 were rerun with v6, and stable-baselines3's beside them in the same session (the
  earlier runs of both moved to the tuning CSV with their labels).
- Session 14, PPO HalfCheetah: the candidates session 13 left, one at a time on v6, tuning
  seeds 100 and 101 at 500k (every evaluation in the tuning CSV; another AMD EPYC machine,
  faster than session 13's: its CPU seconds compare only within this table):

  ===================================================  ========  ========  ===========
  settings                                             seed 100  seed 101  CPU s
  ===================================================  ========  ========  ===========
  v6 (session 13)                                      2449      2368      516-573 (*)
  v6 + lambda 0.92                                     2344      1874      369-370
  v6 + 256x256 nets, minibatches of 128                2280      2014      373-377
  v6 + 128x128 nets                                    2439      1771      379-384
  v6 + both learning rates 1.5x (4.5e-4, 1.5e-3)       2011      2418      361-367
  ===================================================  ========  ========  ===========

  (*) session 13's slower machine. None lifted both seeds; each lost more than 300 on one
  of them. Two seeds cannot separate changes of this size (one configuration's seeds
  differ by up to ~600), so v6 stays.

  Is v6 level with stable-baselines3 and seed 2 unlucky? Both libraries on two fresh seeds
  (102 and 103, never used for tuning; side by side, this session): machina 1968 and 1791,
  stable-baselines3 2600 and 2159, at 0.65x its CPU seconds (389-399 against 601-606). On
  the five seeds not used to choose v6 (0-2, 102, 103) machina's median is 1982 [1791,
  2394] against 2357 [2159, 2600]: the shortfall is real, and v6's tuning seeds (100/101,
  2449/2368) were its lucky ones. The curves: machina is ahead at 100-200k on most seeds
  (stable-baselines3 starts slower), behind by 300k (medians of the five 1487 against
  1742), and climbs more slowly from there (median gain to the end +395 against +587).
  Is it the annealed learning rate (to 0 over the budget; rl-zoo keeps 3e-5 constant)?
  v6 with constant rates (3e-4, 1e-3) on seeds 104 and 105, beside v6: 2174 and 692
  against 2365 and 1693; seed 105's evaluations swung 2065 -> 1031 -> 2030 -> 692 over the
  last 175k. Annealing stabilises the late phase; it is not what holds machina back. Nor
  are the hyperparameters: machina with rl-zoo's whole recipe for this id (256x256, gSDE,
  3e-5 constant, 20 epochs of 128, clip 0.4, lambda 0.9; on top of v6's per-minibatch
  standardisation) on seeds 102 and 103 reached 1774 and 1899 at 504k (its 8000-step
  iterations), against v6's 1968 and 1791 and stable-baselines3's 2600 and 2159, at 0.82x
  stable-baselines3's CPU. The same settings learn less in machina: what differs is the
  implementation, e.g. machina's tanh-bounded Gaussian mean (stable-baselines3 clips the
  action instead), ReLU (rl-zoo's activation here) against tanh, orthogonal initialisation
  (rl-zoo turns it off), observation statistics updated once per iteration against every
  step, separate optimisers. Next:
  compare candidates on 4+ seeds (102-105 have v6 baselines), one implementation
  difference at a time, starting with the tanh-bounded mean (tried only once, above: one
  seed at 300k with v2's settings); wider networks cost CPU that
  the 0.7x target does not leave (~80% of machina's CPU is pybullet's own step).
- Session 15, PPO HalfCheetah: implementation differences, one at a time, on seeds 102-105
  (v6 baselines of session 14; 100/101 chose v6 and are biased), 500k, all four seeds of a
  configuration run concurrently on one machine (every evaluation in the tuning CSV):

  =====================================================  ====  ====  ====  ====  ======  =======
  settings                                               102   103   104   105   median  CPU s
  =====================================================  ====  ====  ====  ====  ======  =======
  v6 (session 14)                                        1968  1791  2365  1693  1880
  v7 = v6 + linear mean (``squash_mean=False``)          2465  1957  2205  2333  2269    412-416
  v7 + torch's default init (``ortho_init=False``)       2058  2147  2603  1866  2102    ~427
  v7 + Adam epsilon 1e-5 (SB3's for PPO; ``adam_eps``)   2105  2317  2155  1926  2130    ~424
  v7 + SB3's optimiser (``joint_step``) and eps 1e-5     2177  2070  1797  2619  2124    416-428
  stable-baselines3 with v7's settings (its own code)    2404  2161  2418  2537  2411    689-704
  stable-baselines3 (session 14)                         2600  2159
  =====================================================  ====  ====  ====  ====  ======  =======

  The linear mean (``PolNet(squash_mean=False)``, ``make_pol(..., squash_mean=False)``,
  run_ppo.py's ``--no-squash_mean``: stable-baselines3's parameterisation, the policy
  clipping what it sends to the environment) lifted three of the four seeds, so it became
  entry v7 (the other two did not lift v7). On the reported seeds 0-2, with
  stable-baselines3 beside it on the same machine: machina v7 1851, 2015, 1993 against
  v6's 2306, 2394, 1982 (session 13) and stable-baselines3's 2244, 2357, 2378 (the same as
  session 13's, to the digit), at 0.63x its CPU seconds (430-439 against 680-686). Over the
  seven seeds both entries ran (0-2, 102-105) the medians are 2015 (v7) and 1982 (v6), the
  paired differences -455 to +640: no measurable effect, and the four-seed lift was seed
  noise. A configuration's seeds spread by ~600 (v7: 1851-2465), so four seeds resolve
  only differences of several hundred, about the size of the gap itself (~370 on the
  median). Ruled out so far as the cause: lambda, network width, learning-rate level and
  schedule, rl-zoo's whole recipe, the mean's parameterisation, orthogonal against default
  initialisation, Adam's epsilon, per-minibatch against per-batch advantage
  standardisation (that one helped), joint against separate optimisers. Not yet compared:
  observation statistics updated at every step (VecNormalize) rather than once per
  iteration, and the batch's composition: machina's iteration is 2 whole episodes from
  reset (every state of an episode's phase in one batch, from 2 correlated trajectories),
  stable-baselines3's rollout is 16 environments x 512 steps at unrelated phases of their
  episodes. A test of the second needs more environments per iteration with fewer steps
  each, i.e. episodes cut mid-way, which whole-episode sampling does not do today
  (``EpiSampler`` finishes every episode it starts). Comparisons need 8+ seeds per
  configuration to be worth their CPU.

  The reverse test: stable-baselines3 given v7's settings (``--sb3_set n_envs=2
  n_steps=1000 batch_size=64 n_epochs=10 gae_lambda=0.95 clip_range=0.2
  learning_rate=lin_3e-4 use_sde=False policy_kwargs=dict(log_std_init=0.0,
  ortho_init=True, activation_fn="relu", net_arch=dict(pi=[64,64], vf=[64,64]))``; its
  rollouts are then exactly machina's two whole episodes) reached 2404, 2161, 2418, 2537
  (median 2411) against machina v7's 2465, 1957, 2205, 2333 (2269), at 1.7x machina's CPU
  seconds. With the same settings the two are within about one seed's spread of each other
  (machina behind on three seeds by ~200, ahead on one); with rl-zoo's recipe machina was
  far behind (1774 and 1899 on seeds 102/103 against 2600 and 2159). What that recipe has
  and v7 does not: gSDE (its exploration noise), 256x256 networks, lr 3e-5, 20 epochs of
  128, clip 0.4, lambda 0.9, 16 environments. So the next suspect is machina's gSDE against
  stable-baselines3's (``StateDependentNoiseDistribution``: features detached from the
  policy's gradient unless ``learn_features``, ``full_std``, the noise matrix's
  parameterisation), tested as: rl-zoo's recipe in both libraries with gSDE off.
- Session 16, PPO HalfCheetah: gSDE's exploration matrices. machina's ``GaussianSDEPol``
  drew one matrix for the whole acting batch, so every environment of a sampler explored
  through the same matrix (each by its own features); stable-baselines3's
  ``reset_noise(n_envs)`` draws one per environment. New: ``GaussianSDEPol(...,
  per_env_noise=True)`` (``make_pol(..., sde_per_env_noise=True)``, run_ppo.py's
  ``--sde_per_env_noise``, ``--set sde_per_env_noise=True`` here), on the sampler's fast
  path too. rl-zoo's recipe in machina (as in session 14: 256x256, lr 3e-5 constant, 20
  epochs of 128, clip 0.4, lambda 0.9, gSDE log-std -2 redrawn every 4 steps, 8
  environments of whole 1000-step episodes; on top of v7), 504k steps:

  =====================================================  =====  =====  =====  =====  ======
  settings                                               102    103    104    105    median
  =====================================================  =====  =====  =====  =====  ======
  recipe, one matrix for all environments (session 14)   1774   1899
  recipe, one matrix per environment                     2254   2267   2301   2097   2260
  recipe, one per environment, 10 epochs (at 200k)       620    646    909    621
  recipe, one per environment, 128x128 nets              1495   1644   2086   2062   1853
  v7 + gSDE, one matrix per env, 8 envs (at 152k)        -796   -201   -1058  49
  stable-baselines3, rl-zoo (sessions 14 and 16)         2600   2159   1981   2360   2260
  v7 (session 15, for reference)                         2465   1957   2205   2333   2269
  v7 rerun (session 16, another CPU generation)          2013   2408
  =====================================================  =====  =====  =====  =====  ======

  One matrix per environment lifted the recipe by 480 and 368 on the two seeds with a
  shared-matrix run (at 300k: 1780 and 1811 against 1264 and 1267), and with it machina
  and stable-baselines3 given the same recipe have the same median over four seeds
  (paired differences -346, +108, +320, -263): the implementation gap that session 14 saw
  under rl-zoo's recipe was the shared matrix. It does not move the entry: the recipe
  learns what v7 learns (2260 against 2269 on these seeds) at about 1.26x the CPU seconds
  (session 14, one machine: the recipe at 0.82x stable-baselines3's, v6 at 0.65x), beyond
  the 0.7x target (this session's runs: 705-711 CPU s with 8-12 processes sharing the 2
  cores, stable-baselines3's 777-795 with 2-6; contention inflates CPU seconds, so these
  two do not compare); halving its epochs lost on all four seeds by 200k (stopped there).
  Minibatches of 256 were stopped at 104k for time (416-462 there, the recipe's 443-548).
  The update's arithmetic: a minibatch of 128 through both 256x256 networks costs ~3.5 ms,
  through 128x128 ~1.5 ms (one torch thread, forward, backward and Adam), i.e. ~550
  against ~235 us per env step at 20 epochs (v7: ~150). So the recipe with 128x128 nets,
  run to the end beside two v7 reruns (6 processes on the 2 cores): 1495, 1644, 2086, 2062
  on seeds 102-105 (median 1853) in 551-558 CPU s, against v7's 2013 and 2408 on 102/103
  in 465-467 CPU s: slower learning at lr 3e-5 and still more CPU than v7 (the arithmetic's
  ~40 s is not all of it: 8 environments and bigger iterations cost too). Those two v7
  reruns also differ from session 15's v7 runs on the same seeds (2465, 1957): equal at
  step 0, apart from 26k steps on. Both machines are "AMD EPYC x2"; this one is family 25
  model 17 with AVX-512, session 15's was not recorded beyond the name (the machine line
  now records family, model and AVX-512). Read then as float kernels differing between CPU
  generations; session 17 found otherwise (the code, not the machine: below). The
  sampler's cost with per-environment matrices is the shared matrix's (8 environments,
  256x256 policy: 5.2-5.5 CPU s per 8000 steps either way; drawing 8 matrices every 4
  steps adds ~35 us per acting call). gSDE at v7's own cost (64x64 nets, lr 3e-4 decayed,
  10 epochs of 64; 8 environments with one matrix each, initial log-std -2) was far behind
  v7 at 152k on all four seeds (v7 at 100k: 231, 441, 367, -205) and was stopped there: as
  in session 8 with a shared matrix, gSDE needs the recipe's other settings on this task.
  v7 stays the entry (``GaussianSDEPol``'s default
  stays one shared matrix, so Hopper's entry and its reported runs are unchanged). Where
  this leaves the target: on seeds 102-105, v7 (2269) and stable-baselines3 with rl-zoo's
  settings (2260) are level at 0.63x the CPU; on the reported seeds 0-2 stable-baselines3
  is ahead (2357 against 1993); over the seven seeds both ran, medians 2357 against 2015.
- Session 17, PPO HalfCheetah: where the rl-zoo recipe's CPU goes, and a cheaper recipe.
  Measured alone (one process, one torch thread, CPU time, on one 8000-step sample of 8
  environments): sampling 499 us per env step (the environment most of it); the update, per
  env step: 586 us (256x256 nets, 20 epochs of 128, two optimisers: the recipe), 549 (one
  optimiser, ``joint_step``), 436 (minibatches of 256), 415 (both); v7's (64x64, 10 epochs of
  64) 280. stable-baselines3's rl-zoo runs cost ~1.45 ms per env step beside these runs, so
  0.7x leaves ~1.0 ms: the recipe is beyond it, minibatches of 256 with the joint optimiser at
  its edge. On seeds 102-105, 504k steps, on top of the recipe with one matrix per
  environment, minibatches of 256, ``joint_step`` and Adam epsilon 1e-5 (stable-baselines3's):

  =====================================================  =====  =====  =====  =====  ======
  settings                                               102    103    104    105    median
  =====================================================  =====  =====  =====  =====  ======
  lr 3e-5 constant (the recipe's; stopped at 128k)       435    427    853    413
  lr 1e-4, annealed to 0                                 2006   2270   2347   2267   2269
  lr 1e-4, annealed, 15 epochs (stopped at 280k)         1239   1903   1760   1340
  recipe, one matrix per environment (session 16)        2254   2267   2301   2097   2260
  v7, the committed code (sessions 16 and 17)            2013   2408   2422   2199   2304
  stable-baselines3, rl-zoo (sessions 14 and 16)         2600   2159   1981   2360   2260
  =====================================================  =====  =====  =====  =====  ======

  (128k for seed 104 is 104k.) The larger annealed rate starts faster (at 200k: 1450, 1102,
  1334, 1523, against v7's 1537, 972, 966, 1349 and stable-baselines3's 964, 1324, 681, 701)
  and ends where every configuration of both libraries has ended on these seeds, medians
  2260-2304, at 539-547 CPU s (~1.08 ms per env step, 0.74x stable-baselines3's cost per
  step measured beside it): no better than v7 and dearer. Fifteen epochs fell behind by 280k.
  v7 stays the entry. On these seeds the committed v7 (2304) is level with
  stable-baselines3 (2260); on the reported seeds 0-2 it is behind (1993 against 2357); over
  the seven seeds both ran, medians 2015 against 2357, unchanged. Three fresh seeds, 106-108,
  side by side (a measurement, not tuning): machina v7 1978, 2446, 2107 in 449-458 CPU s,
  stable-baselines3 2456, 2006, 2310 in 691-696 (0.66x). Over the ten seeds both have run
  (0-2, 102-108) the medians are 2061 (v7) against 2334, machina ahead on 3 of 10 pairs: a
  gap of ~270 that is real, and that no setting tried at 0.7x the CPU has closed.

  Reproducibility, corrected: both libraries' reported runs (seeds 0-2, session 15) were
  rerun here to the end on this session's machine (AMD EPYC family 25 model 17, AVX-512)
  and every evaluation came out the same to the digit (CPU seconds side by side, 8-11
  processes on the 2 cores: machina 457-464, stable-baselines3 743-747, 0.62x; session 15:
  0.63x), as the committed v7 code reproduces session 16's v7 runs on seed 102 (-1221.6 at
  26k). Session 15's v7 runs on the tuning seeds (its table: 2465, 1957, 2205, 2333) do not
  reproduce because they started at
  17:26, six minutes before the linear mean was committed (336a6f4): they ran an earlier
  working copy of it. So session 16's reading (CPU generations) was wrong, and v7's figures
  on 102-105 are those of the committed code in this table's v7 row; the tuning CSV's
  session-15 label says so.
- Session 18, PPO HalfCheetah: the update's cost is per minibatch, so v7 could afford more
  data per minibatch. ``bench_update.py --split`` times one iteration by part, beside
  stable-baselines3's rollout and ``train`` (CPU per env step; the table below). With v7's
  64x64 networks a minibatch costs torch's per-operation overhead (~2 ms for both networks'
  forward, backward and Adam steps), almost independent of its size: 20 epochs of 128 take
  as many minibatches (312 per 2000-step iteration) as v7's 10 of 64 and cost about the
  same. Entry v8 = v7 with 20 epochs of 128 (rl-zoo's epochs and minibatch size), seeds
  102-108 (all seven run at once), 500k steps:

  ============================================  ====  ====  ====  ====  ====  ====  ====  ======
  settings                                      102   103   104   105   106   107   108   median
  ============================================  ====  ====  ====  ====  ====  ====  ====  ======
  v8 = v7 + 20 epochs of 128                    2463  2259  2479  2617  2499  2299  1781  2463
  v8 at 200k                                    1848  1690  2004  2207  1894  1864  1281  1864
  v7, the committed code (sessions 16-17)       2013  2408  2422  2199  1978  2446  2107  2199
  v7 at 200k (104-108)                                      1482  1689  1542  1553  1193
  stable-baselines3, rl-zoo (s. 14, 16, 17)     2600  2159  1981  2360  2456  2006  2310  2310
  ============================================  ====  ====  ====  ====  ====  ====  ====  ======

  v8 learns much faster early (at 200k ahead of v7 on the five seeds with a v7 curve, by
  ~350 on their median)
  and ends ahead on the median and the mean (2342 against 2225; stable-baselines3 2267),
  though not on every seed (paired with v7: +450, -149, +57, +418, +521, -147, -326), at
  v7's CPU (404-412 CPU s, the seven sharing the 2 cores). It became the entry. Also
  tried, stopped at 176k: rl-zoo's recipe in its cheaper form of session 17 (minibatches of
  256, one optimiser, lr 1e-4 annealed) with a 128x128 value network (~0.65x
  stable-baselines3's CPU per step in ``--split``, against ~0.70x with 256x256): behind
  the 256x256 value network on all four seeds 102-105 at 104k (-79, 852, 479, 638 against
  952, 1314, 620, 1029).

  ``bench_update.py --split`` on an idle machine (CPU us per env step, one iteration, median
  of 3 rounds; evaluations excluded as in ``cpu_s``):

  =====================================================  =========  ======  ======  =====
  contender                                              sampling   update  total   vs SB3
  =====================================================  =========  ======  ======  =====
  machina, entry v8 (20 epochs of 128)                   397        241     639     0.68
  machina, v7 (10 epochs of 64)                          397        228     626     0.66
  machina, rl-zoo's recipe                               399        464     867     0.92
  machina, recipe, minibatches of 256, one optimiser     400        323     726     0.77
  machina, the same, 128x128 value network               411        248     659     0.70
  stable-baselines3, rl-zoo (estimators in sampling)     459        485     944     1.00
  =====================================================  =========  ======  ======  =====

  (machina's estimators: 1-4 us per step.) The environment is most of the sampling column
  on both sides; the 0.7x budget leaves no room for rl-zoo's 256x256 networks at 20
  epochs, even with minibatches of 256.

  Reported runs, seeds 0-2, both libraries side by side on one machine (six processes on
  the 2 cores): machina v8 2313, 2362, 2181 (median 2313) in 379-381 CPU s;
  stable-baselines3 2244, 2357, 2378 (2357, the same returns as every earlier run of it, to
  the digit) in 567-574: 0.66x the CPU, return short by 44 on the median (v7's were 1851,
  2015, 1993: short by 364). Over the ten seeds both have run (0-2, 102-108), v8's median
  is 2338 against stable-baselines3's 2334 (means 2325 and 2285): level. The three
  reported seeds cannot separate the two; the target (median of 3 seeds at least
  stable-baselines3's) stays unmet by a margin far inside one configuration's seed spread.
- Session 19, PPO HalfCheetah: two of rl-zoo's settings on top of v8, each on seeds 102-108
  (all fourteen runs at once at first), CPU-free changes (500k; every evaluation in
  ``assets/bullet_tuning.csv``):

  ============================================  ====  ====  ====  ====  ====  ====  ====  ======
  settings                                      102   103   104   105   106   107   108   median
  ============================================  ====  ====  ====  ====  ====  ====  ====  ======
  v8 (session 18)                               2463  2259  2479  2617  2499  2299  1781  2463
  v8 + clip 0.3                                 2512  2555  2394  2224  1751  2015  1666  2224
  v8 + lambda 0.9, at 150k (stopped there)      1454  1228  861   1451  1156  1301  1341  1301
  v8 at 150k                                    1485  1491  1645  1788  1373  1433  994   1485
  ============================================  ====  ====  ====  ====  ====  ====  ====  ======

  rl-zoo's lambda 0.9 learnt slower from the start (behind on six seeds at 100k and 150k);
  a wider clip range (rl-zoo's 0.4 is for its learning rate 3e-5, ten times below v8's)
  helps on three seeds and costs much on four (mean 2159 against v8's 2342). v8 stays.

  Fresh seeds 109-111, both libraries side by side (a check, not tuning; six processes on
  the 2 cores): machina v8 2387, 2356, 2059 in 394-398 CPU s; stable-baselines3 2404, 2436,
  2531 in 585-588 (0.67x). Over the thirteen seeds both have run (0-2, 102-111): medians
  2356 and 2360, means 2312 and 2325, machina ahead on 7 pairs; on the six seeds that chose
  nothing (0-2, 109-111) medians 2335 and 2391, machina ahead on 2. Level overall, a little
  behind where no choice was made: the target (a median of 3 seeds) is decided by which
  three are drawn.
- Session 20, PPO HalfCheetah: four more CPU-free changes on top of v8, each on seeds
  102-108 (fourteen runs at once, then fourteen more), stopped once behind v8 on most seeds
  (every evaluation in ``assets/bullet_tuning.csv``; medians over the seven seeds):

  ==============================================  =====  =====  =====  ======================
  settings                                        100k   150k   176k   behind v8 at the stop
  ==============================================  =====  =====  =====  ======================
  v8 (session 18)                                 1062   1485   1720
  v8 + orthogonal init off (rl-zoo's, for these)  457    1261   1345   6 of 7 at 200k
  v8 + initial log-std -0.5                       221    546    594    7 of 7 from 150k
  v8 + initial log-std +0.5                       518    1138   1366   7 of 7 at 150k
  v8 + value lr 3e-4 (v8: 1e-3)                   507    1070   1246   6 of 7 at 176k
  ==============================================  =====  =====  =====  ======================

  Orthogonal initialisation off, which lifted both tuning seeds on v4 (session 13), does not
  on v8; the initial std is a narrow optimum at 1 (session 7 found -1 far behind 0), and the
  value network wants its larger rate. Each ran behind v8's curve by 150-200k; v8's own lead
  over v7 at 200k held to the end (session 18), so none was run on. With clip 0.3 and
  lambda 0.9 (session 19) that is six single changes around v8 and none better: v8 stays.

  The reported runs, seeds 0-2, both libraries, were rerun in pairs (machina and
  stable-baselines3 on one seed at a time, one process per core) so that the wall-clock
  column measures an unshared core: session 18's six processes on the 2 cores gave 0.79x
  in wall-clock against 0.66x in CPU seconds, because machina's three finished first and
  stable-baselines3's last stretch ran on an emptied machine. Both libraries are
  deterministic per seed here, so the returns are session 18's to the digit.
- Session 21, TD3 Hopper: the reported runs (seeds 0-2, both libraries) rerun so that
  wall-clock measures an unshared core: each library's three seeds in turn on its own core
  (``taskset``), on an Intel Xeon (family 6 model 167). machina 2414, 2092, 691 in 574-600 s;
  stable-baselines3 1318, 2368, 2118 in 1044-1088 s: 0.55x in wall-clock and CPU (session 8,
  on a shared machine: 0.79x and 0.51x). Only machina's seed 0 repeated session 8's
  evaluations to the digit; the other five runs moved (session 8's machine was not recorded),
  and the medians crossed: machina 2092 against 2118, where session 8 had 2112 against 1164.
  Over the six runs of each library: 2102 against 1501. machina's seed 2 was at 2261 at 90k
  and fell to 691 at the last evaluation: single evaluations of TD3 on Hopper swing by 1000
  and more (stable-baselines3's seed 0: 1170, 514, 1318 at 50k, 80k, 100k), so three final
  evaluations cannot tell these two apart.
- Session 24, TD3 Hopper on the tuning seeds 102-106 (Intel Xeon, family 6 model 167, one
  process per core), both libraries, as a measurement: machina 2181, 539, 1869, 1977, 1653
  (median 1869), stable-baselines3 188, 1263, 398, 2340, 1302 (1263); with the reported
  seeds 0-2 of session 21, medians over eight seeds 1923 against 1310. Final evaluations
  swing as before (machina's seed 103: 2358 at 80k, 539 at 100k). Two single changes on
  the entry, dropped: ``pol_lr=qf_lr=3e-4`` (seed 102: 187 at 100k, stuck below 300 from
  40k on, against 2181) and ``steps_per_iter=1`` (an update phase after every episode, as
  rl-zoo's ``train_freq=(1, "episode")``: seeds 102-103 441 and 2354 against 2181 and 539).
- Session 28, TD3 Hopper: the reported seeds 0-2 of both libraries rerun on an AMD EPYC
  (family 25 model 17, AVX-512), each library's three seeds in turn on its own core, as a
  measurement: machina 1930, 2112, 1287 (median 1930), stable-baselines3 1685, 594, 1164
  (1164), 0.56x in CPU seconds (742 against 1332 s). machina's seeds 1-2 repeat session 8's
  evaluations to the digit, stable-baselines3's three runs repeat session 8's: session
  8 ran on this kind of machine (machina's seed 0 excepted: its 2414 is the Xeon's). The
  medians' order flips with the CPU model; with session 21's Xeon runs, medians over six
  runs each 2011 against 1501.
- Session 21, PPO HalfCheetah on an Intel Xeon (family 6 model 167, AVX-512): v8 itself
  rerun on the tuning seeds 102-108 learns more slowly here than on the AMD EPYC of
  sessions 18-20 (the evaluation of the initial policy is the same to the digit on five of
  the seven seeds and differs by under 0.5 on two; the curves part from the first update):
  behind on 7 of 7 seeds at 200k (median 1093 against 1864), 1975 against 2239 at 300k,
  2258 [1735, 2505] against 2463 at 500k. Seven of seven is unlikely by chance (1 in 128
  by a sign test), but the cause is not known: the float kernels differ with the CPU, and
  the package versions of the earlier sessions (gymnasium, pybullet, numpy) were not
  recorded. So candidates compare only with v8 on the same machine. Two CPU-free changes,
  each on 102-108 beside v8 on this machine (every evaluation in ``assets/bullet_tuning.csv``;
  medians):

  ==============================  =====  =====  =====  =====  =====
  settings                        100k   200k   300k   400k   500k
  ==============================  =====  =====  =====  =====  =====
  v8, this machine                550    1093   1975   2142   2258
  v8 + value lr 2e-3 (v8: 1e-3)   567    1362   1795   2061   2090
  v8 + max_grad_norm 1.0 (0.5)    504    1152   1562   1941   2077
  ==============================  =====  =====  =====  =====  =====

  Ahead of v8 at 200k, behind from 300k on: v8 stays. Screening against the AMD curves
  would have dropped both at 200k for the wrong reason (both behind v8's AMD runs on 6 of 7).
- Session 22, PPO HalfCheetah, the reported seeds 0-2 rerun with both libraries on session
  21's Intel Xeon, each library's three seeds in turn on its own core (a measurement of the
  machine, not tuning; the reported rows stay session 20's AMD runs; every evaluation in
  ``assets/bullet_tuning.csv``): machina v8 2111, 2556, 1167 (median 2111) in 308-352 s,
  stable-baselines3 2246, 2141, 2113 (median 2141) in 433-470 s: return short by 30 (AMD:
  44), 0.72x the wall-clock and the CPU seconds (AMD: 0.66x). stable-baselines3 depends on
  the CPU too: its evaluations part from its AMD runs' at the first one after an update
  (seed 0 at 25k: -1397 against -1328) and its finals moved (AMD 2244, 2357, 2378). So the
  Intel-AMD difference of session 21 is not machina's alone, and the gap on these seeds is
  about the same on both machines. The CPU ratio is not, and the one that moved is
  stable-baselines3: machina costs the same per env step on both (0.62 ms of CPU here, 0.63
  on the AMD EPYC), stable-baselines3 0.85 ms here against 0.95, lower in every 100k
  segment of every seed (0.82-0.89 against 0.90-0.99). Where that comes from is not known:
  ``bench_update.py --split`` on this Xeon, idle, gives session 18's AMD figures for one
  iteration (CPU us per env step: machina's entry 642 = sampling 373 + update 267,
  stable-baselines3 940 = 461 + 479, 0.68x; AMD: 639 and 944, 0.68x), so the full runs'
  stable-baselines3 is cheaper than its one-iteration measurement here, and not on the AMD.
- Session 22, PPO HalfCheetah: four more CPU-free or nearly free changes on top of v8, each
  on 102-108 on the same Xeon (21 runs at once, then gamma's 7), against session 21's v8
  rerun on this machine (every evaluation in ``assets/bullet_tuning.csv``; medians, and on
  how many of the seven seeds the candidate was ahead of v8):

  =================================  ==========  ==========  ==========  =====  ==========
  settings                           100k        200k        300k        400k   500k
  =================================  ==========  ==========  ==========  =====  ==========
  v8, this machine (session 21)      550         1093        1975        2142   2258
  v8 + 25 epochs of 160              498 (3/7)   1277 (5/7)  1714 (3/7)  1839   1909 (3/7)
  v8 + 30 epochs of 192              254 (3/7)   1137 (4/7)  1491 (2/7)  stopped at 326k
  v8 + lambda 0.97 (v8: 0.95)        478 (3/7)   1148 (3/7)  stopped at 226k
  v8 + gamma 0.995 (v8: 0.99)        390 (3/7)   1128 (2/7)  1546 (3/7)  stopped at 350k
  =================================  ==========  ==========  ==========  =====  ==========

  The two epoch variants keep v8's 312 minibatches per 2000-step iteration on more data
  each (the direction that made v8 from v7) and cost 2.5% and 4.6% more CPU per env step
  to 200k (the 21 runs sharing the 2 cores, lambda 0.97 costing what v8 costs; not
  measured on an idle machine). Like the value-lr and
  gradient-clip candidates of session 21, they lead at 200k and fall behind from 300k on.
  Gamma 0.995 (the reward normaliser's too) is behind on the median from 300k. v8 stays
  (twelve single changes around it tried, none better at 500k).
- Session 23, PPO HalfCheetah: an entropy bonus, the one knob left untried (v8 and
  stable-baselines3's rl-zoo entry have none), on the same Xeon and seeds 102-108 (14 runs
  at once; every evaluation in ``assets/bullet_tuning.csv``; medians, seeds ahead of v8):

  =================================  ==========  ==========  ==========  ==========  ==========
  settings                           100k        200k        300k        400k        500k
  =================================  ==========  ==========  ==========  ==========  ==========
  v8, this machine (session 21)      550         1093        1975        2142        2258
  v8 + ent_beta 0.001                522 (4/7)   1456 (6/7)  1910 (4/7)  2146 (5/7)  2223 (4/7)
  v8 + ent_beta 0.003                779 (5/7)   1467 (4/7)  1829 (3/7)  stopped at 300k
  =================================  ==========  ==========  ==========  ==========  ==========

  ent_beta 0.001 ran to 500k: level with v8 (finals 1740, 2485, 2190, 2392, 1977, 2446, 2223
  against 2301, 2214, 1941, 2505, 2258, 2416, 1735; means 2208 and 2196), not better, so v8
  stays: fourteen single changes around it tried, none better at 500k. Again a candidate
  led at 200k and not at 300k.
- Session 25, the environments: ``machina.envs`` now steps the walker tasks with
  ``machina.envs._bullet_walker.WalkerStep`` (pybullet asked once per body for all joints,
  parts and contacts, ``pybullet_envs``' arithmetic in its order; the same episodes to the
  bit), on top of session 24's bound client. Both libraries make their environments through
  ``machina.envs``' registration, so both gain. The reported seeds 0-2 of PPO HalfCheetah
  rerun on session 22's Intel Xeon, each library's three seeds in turn on its own core
  (every evaluation in ``assets/bullet_tuning.csv``): every evaluation of both libraries
  equal to session 22's (126 of 126), in 252-266 s for machina (session 22: 308-352) and
  406-419 s for stable-baselines3 (433-470): medians 262 against 413 s, 0.63x the
  wall-clock and the CPU seconds (session 22: 0.72x). ``bench_update.py --split`` on the same
  machine (CPU us per env step): machina's entry 503 = sampling 246 + update 255,
  stable-baselines3 833 = 349 + 484, 0.60x (session 24: 596 against 907, 0.66x). The
  environment is a fixed cost of both; cheaper, it leaves more of each side's own cost in
  the ratio. The reported rows stay session 20's AMD runs. TD3 Hopper, seeds 0 (both
  libraries) and 1 (machina) rerun the same way: every evaluation equal to session 21's
  (Hopper's many resets included); the step is ~1% of a TD3 step there (one 256x256 update
  per env step), and both libraries took 9-10% more CPU than in session 21 on this day's
  machine (machina 643 and 634 s against 589 and 571; stable-baselines3 1145 against 1040),
  the ratio unchanged (0.56x against 0.57x on seed 0).
- Session 26, machina's PPO step: ``ppo_clip.train`` now takes the policy's and the value
  function's steps through one backward pass when the two networks share nothing
  (``machina.algos._common.PolVfStep``; the same parameters and Adam states bit for bit).
  machina's reported seeds 0-2 of PPO HalfCheetah rerun on the same Xeon: every evaluation
  equal to session 25's (63 of 63), in 236-242 CPU seconds against 249-263 (stable-
  baselines3's session-25 runs: 405-415): 0.59x its CPU seconds. Other jobs shared the
  machine during these runs, so their wall-clock (251-264 s) is not comparable.
- Session 26, PPO HalfCheetah: the two network choices "What Matters in On-Policy RL"
  (Andrychowicz et al. 2020) ranks high and v8 had not tried, each on 102-108 on the same
  Xeon against session 21's v8 rerun there (one process per core; every evaluation in
  ``assets/bullet_tuning.csv``; medians, seeds ahead of v8):

  =================================  ==========  ==========  ==========  ==========  ==========
  settings                           100k        200k        300k        400k        500k
  =================================  ==========  ==========  ==========  ==========  ==========
  v8, this machine (session 21)      550         1093        1975        2142        2258
  v8 + tanh hidden layers            597 (5/7)   1191 (4/7)  1735 (3/7)  1889 (3/7)  1870 (2/7)
  v8 + 256x256 value network         575 (5/7)   1319 (3/7)  1797 (4/7)  2190 (4/7)  2270 (4/7)
  v8 + 128x128 value network         527 (4/7)   1533 (6/7)  1976 (4/7)  2176 (4/7)  2263 (3/7)
  =================================  ==========  ==========  ==========  ==========  ==========

  Tanh activations (``--set activation=tanh``: CleanRL's and the paper's choice; both
  networks) learn faster to 100k and fall behind from 300k on (means at 500k 1754 against
  2196). The wider value network (``vf_h_size=256``, the policy's 64x64 kept) ends level
  (means 2190 and 2196) at 1.4-1.8x v8's CPU seconds per run (367-461 s against 252-266),
  which alone would take machina past the 0.7x time target. A 128x128 value network (run
  after the one-backward PPO step below, at ~1.1x v8's CPU: 257-265 s against 236-242)
  leads at 200k on 6 of 7 seeds and ends level too (means 2208 and 2196). None is adopted:
  seventeen single changes around v8 tried, none better at 500k.
- Session 39, both PPO cells rerun on the reported seeds 0-2 with the entries and rl-zoo's
  settings unchanged (session 38 changed a walker's first episode in both libraries, so the
  recorded runs no longer reproduced; an AMD EPYC, each library's six runs in turn on its
  own core, the machine shared with other work): Hopper machina 1941, 1908, 2468 against
  1459, 1766, 2094 (0.49x CPU); HalfCheetah 2371, 2467, 1638 against 2259, 2232, 2591
  (0.52x CPU). Both cells meet both targets; on HalfCheetah that is the seeds' draw more
  than a change in the libraries' gap (over sixteen pairs the medians are 2359 and 2358.5).
  The replaced rows are in ``assets/bullet_tuning.csv``. An idle same-machine check of
  seed 0's second 25k steps: 0.60x (HalfCheetah), 0.41x (Hopper).
- Session 41, SAC Hopper rerun on the reported seeds 0-2 (sessions 40-41, an AMD EPYC,
  the entry and rl-zoo's settings unchanged; machina's runs used session 40's early code,
  which today's repeats to the digit: seed 0's evaluation at 20,866 steps 898.5 both
  times): machina 647, 1800, 305 (median 647) against 1047, 2006, 1395 (1395), 1370 against
  2349 CPU seconds (0.58x). The return target is **missed**; the runs replaced (session 20's
  code) gave 616, 2494, 1910 against 1702, 2128, 1665 on the same seeds and settings, so one
  run moves by up to 1,600 between code versions that change no algorithm. Curves
  (evaluations at 0, 10k, ..., 100k): machina seed 0 46 20 899 1246 1394 1608 1648 1884 1866
  1892 647; seed 1 40 21 142 143 220 226 1593 1550 531 1822 1800; seed 2 39 22 910 144 129
  190 224 243 147 165 305; stable-baselines3 seed 0 29 30 133 275 174 306 260 190 675 1627
  1047; seed 1 36 39 118 367 317 539 981 1906 1995 2016 2006; seed 2 29 30 162 236 322 720 1855
  2007 2139 1546 1395. machina is far ahead at 20k (~900, the hopper upright and leaning, against
  ~150) and then either climbs with large swings or falls to 130-330 and stays there for
  40k steps or more (seed 2, and both tuning seeds below); stable-baselines3 rises late and
  steadily. The temperature and entropy (printed at each evaluation since this session)
  look sound in the stuck runs: alpha ~0.03, entropy at its target -3, Q ~48-50 (1-2 reward
  per step over gamma 0.98's ~50-step horizon), Q losses 0.2-0.5.
  What differs from stable-baselines3's run, in the order to test them on seeds 100+:
  (1) the policy's noise: machina's ``PolNet`` has one state-independent log-std vector
  (PPO's parameterisation), where SAC's paper and stable-baselines3 make it a function of
  the state (here gSDE, initial log-std -3): ``PolNet(state_std=True)`` (``--set
  state_std=True``, ``run_sac.py --state_std``) added this session for it; (2) the update
  cadence: machina samples whole episodes, up to 1,000 steps, then takes as many updates in
  a row, where rl-zoo interleaves 8 steps and 8 updates: the data lag behind the policy by
  up to 1,000 updates once episodes are long; (3) 256x256 against 400x300 nets; (4) rl-zoo
  decays Hopper's lr linearly (``--set anneal_lr=True``, ``run_sac.py --anneal_lr``, added
  this session; these runs set each batch's rate at its end, since moved to its middle, 1%
  of the budget apart): on tuning seeds 100 and 101 it gave 159 and 449 at 100k (100: 911
  at 20k, then 150-160 from 61k; 101: 450 at 20k, then 140-330); on seed 100 the unchanged
  entry reached 2174 (1011 at 20k, 137-465 from 30k to 80k, 2134 at 90k) and ``state_std``
  1590 (140 at 20k, 198-1048, then 750 and 1590): one seed, so nothing adopted; seed 101 of
  both was stopped at 20k (``assets/bullet_tuning.csv``, labelled). All three swing by
  1,000 and more between evaluations. Still to try: the evaluation against the
  training episodes' returns (done in session 42, below), and (2), which whole-episode
  sampling cannot shorten with one environment (it needs partial episodes, or several
  environments and updates between their episodes).
- Session 42, SAC Hopper on the tuning seeds 100-103 (an AMD EPYC, three runs at a time on
  the 2 cores beside this session's tests; evaluations are deterministic per seed, CPU
  seconds not compared; every evaluation in ``assets/bullet_tuning.csv``, labelled).
  New: ``machina.pols.TanhGaussianSDEPol``, gSDE for SAC as stable-baselines3's
  ``use_sde=True`` (``tanh(clip(m(s), ±2) + phi(s) @ E)``, the ``(256, 3)`` exploration
  matrix redrawn every 8 steps as rl-zoo's ``train_freq=8`` does, initial log-std -3,
  features learned through the log-likelihood; ``--set sde_sample_freq=8``,
  ``run_sac.py --sde_sample_freq 8``). Final evaluations at 100k:

  =======================  ======  ======  ======  ======
  settings                 100     101     102     103
  =======================  ======  ======  ======  ======
  entry (unchanged)        2174    2215    487     2469
  + ``state_std=True``     1590    1141    418     (10k)
  + gSDE (every 8 steps)   --      1137    788     1162
  =======================  ======  ======  ======  ======

  Curves, every 10k from 20k: entry 101: 116 136 213 205 360 318 725 265 2215; 102: 120
  159 142 154 148 325 408 734 487; ``state_std`` 101: 120 622 190 222 2022 940 2186 565
  1141; 102: 144 152 629 994 559 290 1101 525 418; gSDE 101: 138 154 164 275 319 677 486
  576 1137; 102: 155 384 294 2062 2055 1124 857 2492 788; 103: 129 185 1534 1701 862 2183
  2122 726 1162; entry 103: 157 153 153 1375 541 1538 1685 2475 2469. gSDE is behind the
  entry on two of three seeds (medians over 101-103: 1137 against 2215) and swings as
  much (102: 2492 at 90k, 788 at 100k); the state-dependent log-std is behind on all three
  where both finished. Neither is adopted: what stable-baselines3's run has and machina's
  entry lacks is not, on these seeds, what makes the difference. The entry itself reached
  2174, 2215, 487, 2469 on 100-103 (median 2195), against 647, 1800, 305 on the reported
  0-2: over its seven runs the median is 1800. stable-baselines3 has not been run on
  100-103; that comparison (about 40 CPU minutes per run) is the next measurement, before
  any more tuning: if its runs there are as far above its reported 1395, the shortfall is
  the three reported seeds' draw.
  The exploring policy's own episodes, printed beside each evaluation since this session,
  are as short as the deterministic evaluation's where a run is stuck (entry seed 102 at
  30k-60k: evaluations 159, 142, 154, 148, training-episode medians 137, 136, 146, 151 over
  120-130 episodes each): the policy itself falls after ~80 steps on average (10k steps
  in 120-130 episodes); it is not a deterministic mean failing where the noisy policy
  hops.
- Cost: machina's PPO samples and learns about 1.6x as many env steps per CPU second as
  stable-baselines3's at these settings (1332 against 821 on Hopper, seed 0; 64x64 nets and
  10x32 minibatches per 2048 steps against 256x256 nets and 20x64 minibatches per 8192);
  machina's SAC takes about 65 updates (batch 256, 256x256) per CPU second, and was at 1041
  after 40k steps on seed 0.
- The machine: a load average of 10-26 on 2 cores from other programs while these ran;
  each benchmark process got about 8% of a core, so wall-clock seconds are about 10x the
  CPU seconds and mostly measure the neighbours. Compare CPU seconds (``cpu_s``); the
  processes ran concurrently (stable-baselines3's PPO, machina's PPO and the off-policy
  queue alternating libraries), so they shared the same conditions.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import hyperparams  # noqa: E402
from _harness import machine, packages, quiet_sb3  # noqa: E402
from bullet_report import machines_path  # noqa: E402

import machina.envs  # noqa: E402, F401  (registers the PyBullet ids with gymnasium)

ENVS = ("HopperBulletEnv-v0", "HalfCheetahBulletEnv-v0")
ALGOS = ("ppo", "sac", "td3")
LIBS = ("machina", "sb3")
BUDGET = {"ppo": 500_000, "sac": 100_000, "td3": 100_000}
EVAL_EVERY = {"ppo": 25_000, "sac": 10_000, "td3": 10_000}
EVAL_EPIS = 5
REPO = os.path.dirname(os.path.dirname(HERE))
CSV_PATH = os.path.join(REPO, "assets", "bullet_results.csv")
# Beside the repository, outside git: checkpoints (replay buffers included) are not results.
CKPT_DIR = os.path.join(os.path.dirname(REPO), "bullet_ckpt")
KILL_ENV = "BENCH_BULLET_KILL_AFTER_CKPT"  # tests only: SIGKILL after this many checkpoints
FIELDS = [
    "lib", "algo", "env", "seed", "budget", "attempt", "steps", "wall_s", "cpu_s", "eval_s",
    "eval_cpu_s", "eval_return", "eval_std", "final", "load1",
]  # fmt: skip
# The sidecar ``<csv>_machines.csv``: one row per process that ran a piece of a run (at its
# first evaluation), naming the machine and the installed versions (``_harness.packages``).
# CPU seconds are only comparable on one machine, and these runs span sessions on different
# ones; "packages" was added in session 22 (empty in the rows before).
MACHINE_FIELDS = [
    "lib", "algo", "env", "seed", "budget", "attempt", "first_eval_steps", "machine", "packages",
]  # fmt: skip

# rl-baselines3-zoo's hyperparameters (hyperparams/{ppo,sac,td3}.yml) for these ids; the
# string "lin_<x>" is rl-zoo's linear schedule from x to 0 over the run.
_SB3_PPO = dict(
    batch_size=128, n_steps=512, gamma=0.99, gae_lambda=0.9, n_epochs=20, ent_coef=0.0,
    sde_sample_freq=4, max_grad_norm=0.5, vf_coef=0.5, learning_rate=3e-5, use_sde=True,
    clip_range=0.4,
    policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn="relu",
                       net_arch=dict(pi=[256, 256], vf=[256, 256])),
)  # fmt: skip
_SB3_SAC = dict(
    learning_rate=7.3e-4, buffer_size=300_000, batch_size=256, ent_coef="auto", gamma=0.98,
    tau=0.02, train_freq=8, gradient_steps=8, learning_starts=10_000, use_sde=True,
    policy_kwargs=dict(log_std_init=-3, net_arch=[400, 300]),
)  # fmt: skip
_SB3_TD3 = dict(
    gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise_std=0.1, gradient_steps=-1,
    train_freq=(1, "episode"), learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]),
)  # fmt: skip
SB3: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "HalfCheetahBulletEnv-v0": dict(_SB3_PPO, n_envs=16, normalize=True),
        "HopperBulletEnv-v0": dict(_SB3_PPO, n_envs=16, normalize=True, clip_range="lin_0.4"),
    },
    "sac": {
        "HalfCheetahBulletEnv-v0": dict(_SB3_SAC),
        "HopperBulletEnv-v0": dict(_SB3_SAC, learning_rate="lin_7.3e-4"),
    },
    "td3": {
        "HalfCheetahBulletEnv-v0": dict(_SB3_TD3, time_feature=True),
        "HopperBulletEnv-v0": dict(_SB3_TD3, time_feature=True),
    },
}


class TimeFeature(gymnasium.Wrapper):
    """Append the remaining-time fraction ``1 - t / max_episode_steps`` to a Box observation
    (the feature of sb3-contrib's ``TimeFeatureWrapper``, which rl-zoo uses for TD3 here)."""

    def __init__(self, env: gymnasium.Env, max_steps: int = 1000) -> None:
        super().__init__(env)
        space = env.observation_space
        low = np.append(space.low, 0.0).astype(np.float32)
        high = np.append(space.high, 1.0).astype(np.float32)
        self.observation_space = gymnasium.spaces.Box(low, high, dtype=np.float32)
        self.max_steps = max_steps
        self.t = 0

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.append(obs, 1.0 - self.t / self.max_steps).astype(np.float32)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self.t = 0
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: np.ndarray) -> tuple:
        self.t += 1
        obs, rew, term, trunc, info = self.env.step(action)
        return self._obs(obs), rew, term, trunc, info


# ---------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------


class Recorder:
    """Clock and CSV rows of one run.

    ``wall_s`` / ``cpu_s`` count training only: the clock is paused while the policy is
    evaluated (counted in ``eval_s`` / ``eval_cpu_s``) and while a checkpoint is written (not
    counted). A resumed run restores the counters of its checkpoint, so the columns stay
    cumulative over the pieces of a run (the work redone after a kill is counted once).
    Rows recorded with ``defer=True`` wait in ``pending`` until :meth:`checkpoint` has saved
    them with the run: each row reaches the CSV exactly once, whenever the process dies.
    """

    def __init__(self, path: str, key: dict[str, Any], every: int, budget: int) -> None:
        self.path, self.key, self.every, self.budget = path, key, every, budget
        self.next_eval = 0
        self.wall_s = self.cpu_s = self.eval_s = self.eval_cpu_s = 0.0
        self.last = math.nan
        self.pending: list[dict[str, Any]] = []
        self.saved = 0
        self.machine_noted = False
        self._resume()

    def _pause(self) -> None:
        self.wall_s += time.perf_counter() - self._t0
        self.cpu_s += time.process_time() - self._c0

    def _resume(self) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def due(self, steps: int) -> bool:
        return steps >= self.next_eval and steps < self.budget

    def record(
        self,
        steps: int,
        evaluate: Callable[[], list[float]],
        final: bool = False,
        defer: bool = False,
    ) -> None:
        self._pause()
        t0, c0 = time.perf_counter(), time.process_time()
        rets = evaluate()
        self.eval_s += time.perf_counter() - t0
        self.eval_cpu_s += time.process_time() - c0
        while self.next_eval <= steps:
            self.next_eval += self.every
        self.last = float(np.mean(rets))
        row = dict(
            self.key,
            steps=steps,
            wall_s=round(self.wall_s, 2),
            cpu_s=round(self.cpu_s, 2),
            eval_s=round(self.eval_s, 2),
            eval_cpu_s=round(self.eval_cpu_s, 2),
            eval_return=round(self.last, 2),
            eval_std=round(float(np.std(rets)), 2),
            final=int(final),
            load1=round(os.getloadavg()[0], 2),
        )
        if defer:
            self.pending.append(row)
        else:
            append_row(self.path, row)
        if not self.machine_noted:
            note = dict(self.key, first_eval_steps=steps, machine=machine(), packages=packages())
            append_row(machines_path(self.path), note, MACHINE_FIELDS)
            self.machine_noted = True
        print(
            f"  {self.key['lib']} {self.key['algo']} {self.key['env']} seed {self.key['seed']}:"
            f" {steps} steps, {self.wall_s:.0f} s, eval {self.last:.1f}",
            flush=True,
        )
        self._resume()

    def state(self) -> dict[str, Any]:
        """JSON-able counters for a checkpoint (the clock must be paused)."""
        names = ("next_eval", "wall_s", "cpu_s", "eval_s", "eval_cpu_s", "last")
        return {"attempt": self.key["attempt"], **{k: getattr(self, k) for k in names}}

    def restore(self, state: dict[str, Any], pending: list[dict[str, Any]]) -> None:
        """Continue the attempt saved in a checkpoint: its counters, and the rows it saved
        that did not reach the CSV before the process died."""
        self.key = dict(self.key, attempt=state["attempt"])
        for k in ("next_eval", "wall_s", "cpu_s", "eval_s", "eval_cpu_s", "last"):
            setattr(self, k, state[k])
        have = {
            r["steps"]
            for r in read_rows(self.path)
            if r["attempt"] == self.key["attempt"] and run_key(r) == run_key(self.key)
        }
        for row in pending:
            if int(row["steps"]) not in have:
                append_row(self.path, row)
        self._resume()

    def checkpoint(self, save: Callable[[dict[str, Any]], None]) -> None:
        """Save the run with ``save(extra)`` (``extra``: these counters and the pending rows),
        then write the pending rows to the CSV. The clock is paused meanwhile."""
        self._pause()
        save({"rec": self.state(), "pending": self.pending})
        self.saved += 1
        if os.environ.get(KILL_ENV) == str(self.saved):
            # Tests: die the hardest way at the worst moment (checkpoint saved, its rows not
            # yet in the CSV), as a kill by PID would at a random one.
            os.kill(os.getpid(), signal.SIGKILL)
        for row in self.pending:
            append_row(self.path, row)
        self.pending = []
        self._resume()

    def flush(self) -> None:
        """Write the pending rows without a checkpoint (at the end of a run)."""
        for row in self.pending:
            append_row(self.path, row)
        self.pending = []


def append_row(path: str, row: dict[str, Any], fields: list[str] = FIELDS) -> None:
    """Append one row (header first if the file is new); one short write, flushed. A file
    written before columns were added to ``fields`` is first rewritten with them (empty in
    its old rows) so that every row lines up with the header."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        _add_columns(path, fields)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _add_columns(path: str, fields: list[str]) -> None:
    """Rewrite the CSV ``path`` with header ``fields`` if its header is a strict prefix of
    them (atomically: a new file moved over the old one); refuse any other mismatch."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
        if header == fields:
            return
        if header != fields[: len(header)]:
            raise ValueError(f"{path}: expected the columns {fields}, found {header}")
        f.seek(0)
        rows = list(csv.DictReader(f))
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_rows(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("seed", "budget", "steps", "final"):
            r[k] = int(r[k])
        for k in ("wall_s", "cpu_s", "eval_s", "eval_cpu_s", "eval_return", "eval_std", "load1"):
            r[k] = float(r[k])
    return rows


def run_key(r: dict[str, Any]) -> tuple:
    return (r["lib"], r["algo"], r["env"], int(r["seed"]), int(r["budget"]))


def finished(rows: list[dict[str, Any]]) -> set[tuple]:
    return {run_key(r) for r in rows if r["final"]}


# ---------------------------------------------------------------------------------------
# machina
# ---------------------------------------------------------------------------------------


def machina_eval(pol: torch.nn.Module, env_id: str, seed: int, prepro: Any, wrap=None):
    """An evaluation closure: ``EVAL_EPIS`` deterministic episodes on their own sampler."""
    from machina.samplers import EpiSampler

    def make() -> gymnasium.Env:
        env = gymnasium.make(env_id)
        return env if wrap is None else wrap(env)

    evaluator = EpiSampler(make, pol, num_envs=EVAL_EPIS, seed=10_000 + seed, prepro=prepro)

    def evaluate() -> list[float]:
        epis = evaluator.sample(pol, max_epis=EVAL_EPIS, deterministic=True)
        return [float(np.sum(epi["rews"])) for epi in epis]

    return evaluator, evaluate


class PPOParts(NamedTuple):
    """What one machina PPO run holds: networks, optimisers, normalisers, samplers."""

    pol: torch.nn.Module
    vf: torch.nn.Module
    optim_pol: torch.optim.Optimizer
    optim_vf: torch.optim.Optimizer
    prepro: Any
    rew_norm: Any
    sampler: Any


def machina_ppo_parts(env_id: str, seed: int, hp: dict) -> PPOParts:
    """``example/run_ppo.py``'s networks, optimisers, normalisers and sampler for ``hp``."""
    from machina.algos import ppo_clip
    from machina.pols import make_pol
    from machina.prepro import BasePrePro, RewardNormalizer
    from machina.samplers import EpiSampler
    from machina.vfuncs import make_vf

    torch.manual_seed(seed)
    env = gymnasium.make(env_id)
    pol = make_pol(
        env.observation_space,
        env.action_space,
        h_size=hp["h_size"],
        log_std_init=hp.get("log_std_init"),
        sde_sample_freq=hp.get("sde_sample_freq") or None,  # 0: plain Gaussian noise
        squash_mean=hp.get("squash_mean", True),
        sde_per_env_noise=bool(hp.get("sde_per_env_noise")),
        activation=hp.get("activation", "relu"),
    )
    vf = make_vf(
        env.observation_space,
        h_size=hp.get("vf_h_size") or hp["h_size"],
        activation=hp.get("activation", "relu"),
    )
    if not hp.get("ortho_init", True):
        # torch's default initialisation instead of machina's orthogonal one (rl-zoo turns
        # SB3's ortho_init off for these ids); the log-std parameter keeps its value
        for module in (*pol.modules(), *vf.modules()):
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()
    eps = hp.get("adam_eps", 1e-8)  # torch's default; stable-baselines3's PPO uses 1e-5
    optim_pol, optim_vf = ppo_clip.make_optims(  # run_ppo.py's --joint_step, --adam_eps
        pol, vf, hp["pol_lr"], hp["vf_lr"], joint_step=bool(hp.get("joint_step")), eps=eps
    )
    prepro = BasePrePro(env.observation_space, clip=10.0) if hp["normalize_ob"] else None
    rew_norm = RewardNormalizer(hp["gamma"]) if hp["normalize_rew"] else None
    sampler = EpiSampler(
        lambda: gymnasium.make(env_id), pol, num_envs=hp["num_envs"], seed=seed, prepro=prepro
    )
    return PPOParts(pol, vf, optim_pol, optim_vf, prepro, rew_norm, sampler)


def machina_ppo_traj(parts: PPOParts, hp: dict, epis: list[dict]) -> Any:
    """The iteration's sampled episodes folded into the normalisers' statistics, then
    normalised and estimated: a registered Traj ready for ``ppo_clip.train``."""
    from machina.traj import Traj
    from machina.traj import epi_functional as ef

    if parts.prepro is not None:
        parts.prepro.update_with_epis(epis)
    if parts.rew_norm is not None:
        parts.rew_norm.update_with_epis(epis)
        epis = parts.rew_norm.normalize_epis(epis)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, parts.vf)
    traj = ef.compute_rets(traj, hp["gamma"], hp["lam"])
    traj = ef.compute_advs(traj, hp["gamma"], hp["lam"])
    traj = ef.centerize_advs(traj)
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    return traj


def machina_ppo_update(parts: PPOParts, hp: dict, traj: Any, clip_param: float) -> None:
    """One PPO update (``hp``'s epochs and minibatches) on a registered Traj."""
    from machina.algos import ppo_clip

    batch_size = hp["batch_size"]
    if hp["max_minibatches"] > 0:
        batch_size = max(batch_size, -(-traj.num_step // hp["max_minibatches"]))
    ppo_clip.train(
        traj=traj,
        pol=parts.pol,
        vf=parts.vf,
        optim_pol=parts.optim_pol,
        optim_vf=parts.optim_vf,
        epoch=hp["epoch_per_iter"],
        batch_size=min(batch_size, traj.num_step),
        clip_param=clip_param,
        ent_beta=hp["ent_beta"],
        max_grad_norm=hp["max_grad_norm"],
        log_enable=False,
        minibatch_norm_advs=hp.get("minibatch_norm_advs", False),
        joint_step=hp.get("joint_step", False),
    )


def machina_ppo(
    env_id: str, seed: int, budget: int, rec: Recorder, hp: dict, ckpt: str | None = None
) -> None:
    """``example/run_ppo.py``'s loop with observation and reward normalisation; with
    ``ckpt`` (a folder), checkpointed at every evaluation and continued from there."""
    parts = machina_ppo_parts(env_id, seed, hp)
    pol, sampler = parts.pol, parts.sampler
    lr_schedules = [(parts.optim_pol, hp["pol_lr"])]
    if parts.optim_vf is not parts.optim_pol:
        lr_schedules.append((parts.optim_vf, hp["vf_lr"]))
    evaluator, evaluate = machina_eval(pol, env_id, seed, parts.prepro)
    objects = dict(pol=pol, vf=parts.vf, optim_pol=parts.optim_pol, optim_vf=parts.optim_vf,
                   sampler=sampler, evaluator=evaluator)  # fmt: skip
    objects.update(
        {k: v for k, v in (("prepro", parts.prepro), ("rew_norm", parts.rew_norm)) if v is not None}
    )
    steps = 0
    with sampler, evaluator:
        steps = _machina_start(ckpt, objects, rec, evaluate)
        while steps < budget:
            # run_ppo.py's --anneal_lr / --anneal_clip: linear decay to 0 over the budget.
            remaining = 1.0 - steps / budget
            if hp.get("anneal_lr"):
                hyperparams.scale_lrs(lr_schedules, remaining)
            clip_param = hp["clip_param"] * (remaining if hp.get("anneal_clip") else 1.0)
            epis = sampler.sample(pol, max_steps=hp["steps_per_iter"])
            traj = machina_ppo_traj(parts, hp, epis)
            machina_ppo_update(parts, hp, traj, clip_param)
            steps += traj.num_step
            if rec.due(steps):
                rec.record(steps, evaluate, defer=ckpt is not None)
                _machina_save(ckpt, objects, rec, steps)
        rec.record(steps, evaluate, final=True)
    _drop_ckpt(ckpt)


def machina_offpolicy(
    algo: str, env_id: str, seed: int, budget: int, rec: Recorder, hp: dict,
    ckpt: str | None = None,
) -> None:  # fmt: skip
    """``example/run_sac.py`` / ``run_td3.py``'s loop with random warm-up steps; with
    ``ckpt``, checkpointed (replay included) at every evaluation and continued from there."""
    from machina.algos import sac, td3
    from machina.nets import PolNet, QNet, SDEPolNet
    from machina.noise import GaussianActionNoise
    from machina.pols import (
        DeterministicActionNoisePol,
        RandomPol,
        TanhGaussianPol,
        TanhGaussianSDEPol,
    )
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.vfuncs import DeterministicSAVfunc

    torch.manual_seed(seed)
    env = gymnasium.make(env_id)
    ob, ac, h = env.observation_space, env.action_space, hp["h_size"]
    if algo == "sac" and hp.get("sde_sample_freq"):
        # rl-zoo's use_sde=True: gSDE noise, log-std init -3, clip_mean 2
        pol = TanhGaussianSDEPol(
            ob, ac, SDEPolNet(ob, ac, h, h), log_std_init=hp.get("log_std_init", -3.0),
            sample_freq=hp["sde_sample_freq"],
        )  # fmt: skip
    elif algo == "sac":
        pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, h, h, state_std=hp.get("state_std", False)))
    else:
        noise = GaussianActionNoise(ac, std=hp["noise_std"])
        pol = DeterministicActionNoisePol(
            ob, ac, PolNet(ob, ac, h, h, deterministic=True), noise=noise
        )
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, h, h)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    targ_pol = copy.deepcopy(pol)
    optim_pol = torch.optim.Adam(pol.parameters(), hp["pol_lr"], fused=True)
    optim_qfs = [torch.optim.Adam(qf.parameters(), hp["qf_lr"], fused=True) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    optim_alpha = torch.optim.Adam([log_alpha], hp.get("alpha_lr", 1e-3))
    lr_schedules = [(optim_pol, hp["pol_lr"]), (optim_alpha, hp.get("alpha_lr", 1e-3))]
    lr_schedules += [(optim, hp["qf_lr"]) for optim in optim_qfs]
    random_pol = RandomPol(ob, ac)
    sampler = EpiSampler(lambda: gymnasium.make(env_id), pol, seed=seed)
    evaluator, evaluate = machina_eval(pol, env_id, seed, None)
    off_traj = Traj(max_steps=hp["replay_size"])
    objects: dict[str, Any] = dict(
        pol=pol, targ_pol=targ_pol, optim_pol=optim_pol, log_alpha=log_alpha,
        optim_alpha=optim_alpha, sampler=sampler, evaluator=evaluator, replay=off_traj,
    )  # fmt: skip
    for i in range(2):
        objects.update({f"qf{i}": qfs[i], f"targ_qf{i}": targ_qfs[i], f"optim_qf{i}": optim_qfs[i]})
    steps, stats, train_rets = 0, {}, []
    with sampler, evaluator:
        steps = _machina_start(ckpt, objects, rec, evaluate)
        while steps < budget:
            warm = steps < hp["random_steps"]
            epis = sampler.sample(random_pol if warm else pol, max_steps=hp["steps_per_iter"])
            train_rets += [float(np.sum(epi["rews"])) for epi in epis]
            traj = Traj()
            # The random warm-up policy has no distribution parameters in ``a_is`` and the
            # off-policy losses need none: keep the same (empty) set of keys in the replay.
            traj.add_epis([{**epi, "a_is": {}} for epi in epis])
            traj.register_epis()
            off_traj.add_traj(traj)
            steps += traj.num_step
            if steps >= hp["random_steps"]:
                if hp.get("anneal_lr"):
                    # rl-zoo's lin_ schedule: every optimiser's lr decays linearly to 0 over
                    # the budget, at the middle of the batch's steps (run_sac.py's).
                    hyperparams.scale_lrs(
                        lr_schedules, max(1.0 - (steps - traj.num_step / 2) / budget, 0.0)
                    )
                # One update per env step sampled, the first ones right after the warm-up.
                n = traj.num_step if not warm else steps - hp["random_steps"]
                common = dict(
                    epoch=max(n, 1),
                    batch_size=min(hp["batch_size"], off_traj.num_step),
                    tau=hp["tau"],
                    gamma=hp["gamma"],
                    log_enable=False,
                )
                if algo == "sac":
                    stats = sac.train(off_traj, pol, qfs, targ_qfs, log_alpha, optim_pol,
                                      optim_qfs, optim_alpha, **common)  # fmt: skip
                else:
                    stats = td3.train(off_traj, pol, qfs, targ_pol, targ_qfs, optim_pol,
                                      optim_qfs, **common)  # fmt: skip
            if rec.due(steps):
                _print_stats(stats, train_rets)
                train_rets = []
                rec.record(steps, evaluate, defer=ckpt is not None)
                _machina_save(ckpt, objects, rec, steps)
        rec.record(steps, evaluate, final=True)
    _drop_ckpt(ckpt)


def _print_stats(stats: dict[str, Any], train_rets: list[float]) -> None:
    """The last update's losses (means over its steps), temperature and entropy: what to
    read first when a run stalls (a Q loss that grows, a temperature that collapses); and
    the returns of the episodes sampled since the last evaluation (the exploring policy's,
    or the random warm-up's), beside the deterministic evaluation that follows (does the
    mean action fail where the noisy one hops?)."""
    shown = []
    if train_rets:
        shown.append(
            f"train episodes {len(train_rets)} return median {np.median(train_rets):.4g} "
            f"max {max(train_rets):.4g}"
        )
    for name, value in stats.items():
        value = float(np.mean(value)) if isinstance(value, (list, tuple)) else float(value)
        shown.append(f"{name} {value:.4g}")
    if shown:
        print("    " + ", ".join(shown), flush=True)


def _machina_start(
    ckpt: str | None, objects: dict[str, Any], rec: Recorder, evaluate: Callable
) -> int:
    """Env steps done: those of the run's checkpoint, restored into ``objects`` (networks,
    optimisers, samplers with their environments' RNGs, prepro, replay, global RNGs), or 0
    after the first evaluation of a new run."""
    from machina import checkpoint

    if ckpt is not None and checkpoint.latest_checkpoint(ckpt) is not None:
        extra = checkpoint.load_run(ckpt, objects)
        rec.restore(extra["rec"], extra["pending"])
        print(f"  resumed attempt {rec.key['attempt']} at {extra['steps']} steps", flush=True)
        return int(extra["steps"])
    rec.record(0, evaluate)
    return 0


def _machina_save(ckpt: str | None, objects: dict[str, Any], rec: Recorder, steps: int) -> None:
    from machina import checkpoint

    if ckpt is not None:
        rec.checkpoint(lambda extra: checkpoint.save_run(
            ckpt, objects, extra={**extra, "steps": steps}, step=steps, keep=1
        ))  # fmt: skip


def _drop_ckpt(ckpt: str | None) -> None:
    """A finished run (its final row is in the CSV) needs its checkpoints no more."""
    if ckpt is not None and os.path.isdir(ckpt):
        shutil.rmtree(ckpt, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# stable-baselines3
# ---------------------------------------------------------------------------------------


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def sb3_setup(
    algo: str, env_id: str, seed: int, hp: dict, last: str | None = None
) -> tuple[Any, Any, Any, bool]:
    """A stable-baselines3 model with rl-zoo's hyperparameters ``hp`` and wrappers for
    ``env_id``, loaded from checkpoint folder ``last`` when given.

    Returns the model, its training env (``VecNormalize`` when ``hp["normalize"]``), the
    evaluation envs, and whether the envs normalise.
    """
    from stable_baselines3 import PPO, SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    hp = dict(hp)
    n_envs = hp.pop("n_envs", 1)
    normalize = hp.pop("normalize", False)
    wrap = TimeFeature if hp.pop("time_feature", False) else None
    kwargs = {k: _schedule(v) for k, v in hp.items()}
    if "policy_kwargs" in kwargs and kwargs["policy_kwargs"].get("activation_fn") == "relu":
        kwargs["policy_kwargs"] = dict(kwargs["policy_kwargs"], activation_fn=torch.nn.ReLU)
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrap)
    eval_env = make_vec_env(env_id, n_envs=EVAL_EPIS, seed=10_000 + seed, wrapper_class=wrap)
    env = venv
    if normalize:
        if last is not None:
            env = VecNormalize.load(os.path.join(last, "vecnormalize.pkl"), venv)
        else:
            env = VecNormalize(venv, gamma=kwargs.get("gamma", 0.99))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    if algo == "td3":
        std = kwargs.pop("noise_std")
        dim = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), std * np.ones(dim))
    cls = {"ppo": PPO, "sac": SAC, "td3": TD3}[algo]
    if last is not None:
        # Schedules and noise from this code, not unpickled closures.
        custom = {k: kwargs[k] for k in ("learning_rate", "clip_range", "action_noise")
                  if k in kwargs}  # fmt: skip
        model = cls.load(os.path.join(last, "model.zip"), env=env, device="cpu",
                         custom_objects=custom)  # fmt: skip
        if algo != "ppo":
            model.load_replay_buffer(os.path.join(last, "replay.pkl"))
        _set_rng(torch.load(os.path.join(last, "rng.pt"), weights_only=False))
    else:
        model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    return quiet_sb3(model), env, eval_env, normalize


def sb3_run(
    algo: str, env_id: str, seed: int, budget: int, rec: Recorder, hp: dict,
    ckpt: str | None = None,
) -> None:  # fmt: skip
    """stable-baselines3 with rl-zoo's hyperparameters and wrappers for ``env_id``.

    With ``ckpt`` (a folder), the run is checkpointed at the first rollout start after each
    evaluation (the model has then been trained on every step it counts): ``model.save``
    (networks, optimisers, step and update counters), ``VecNormalize``'s statistics, the
    replay buffer (SAC, TD3) and the global RNGs. A resumed run continues ``learn`` with
    ``reset_num_timesteps=False`` (so rl-zoo's linear schedules continue where they were);
    its environments start new episodes (SB3 cannot save environments mid-episode).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    last = _latest(ckpt)
    model, env, eval_env, normalize = sb3_setup(algo, env_id, seed, hp, last)

    def evaluate() -> list[float]:
        from stable_baselines3.common.evaluation import evaluate_policy

        if normalize:
            eval_env.obs_rms = copy.deepcopy(env.obs_rms)
        rets, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=EVAL_EPIS, deterministic=True,
            return_episode_rewards=True,
        )  # fmt: skip
        return [float(r) for r in rets]

    def write(folder: str) -> None:
        model.save(os.path.join(folder, "model.zip"))
        if normalize:
            env.save(os.path.join(folder, "vecnormalize.pkl"))
        if algo != "ppo":
            model.save_replay_buffer(os.path.join(folder, "replay.pkl"))
        torch.save(_get_rng(), os.path.join(folder, "rng.pt"))

    class Eval(BaseCallback):
        def _on_step(self) -> bool:
            if rec.due(self.num_timesteps):
                rec.record(self.num_timesteps, evaluate, defer=ckpt is not None)
            return True

        def _on_rollout_start(self) -> None:
            if ckpt is not None and rec.pending:
                steps = self.num_timesteps
                rec.checkpoint(lambda extra: _save_dir(ckpt, steps, {**extra, "steps": steps},
                                                       write))  # fmt: skip

    if last is None:
        rec.record(0, evaluate)
        model.learn(total_timesteps=budget, callback=Eval())
    else:
        extra = _read_meta(last)
        rec.restore(extra["rec"], extra["pending"])
        print(f"  resumed attempt {rec.key['attempt']} at {model.num_timesteps} steps", flush=True)
        model.learn(total_timesteps=budget - model.num_timesteps, callback=Eval(),
                    reset_num_timesteps=False)  # fmt: skip
    rec.flush()
    rec.record(model.num_timesteps, evaluate, final=True)
    env.close()
    eval_env.close()
    _drop_ckpt(ckpt)


def _get_rng() -> dict[str, Any]:
    import random

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),  # noqa: NPY002
            "random": random.getstate()}  # fmt: skip


def _set_rng(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["random"])


def _latest(ckpt: str | None) -> str | None:
    """The newest complete checkpoint folder of a run folder (see :func:`_save_dir`)."""
    from machina import checkpoint

    if ckpt is None:
        return None
    path = checkpoint.latest_checkpoint(ckpt)
    return None if path is None else str(path)


def _read_meta(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, "meta.json")) as f:
        return json.load(f)["extra"]


def _save_dir(ckpt: str, steps: int, extra: dict[str, Any], write: Callable[[str], None]) -> None:
    """One checkpoint of an SB3 run, in the layout of ``machina.checkpoint`` (so that
    ``latest_checkpoint`` finds it): written into a temporary folder, renamed into place,
    then named in ``latest`` (itself replaced atomically); older checkpoints removed after.
    A process killed at any point leaves the previous checkpoint usable."""
    os.makedirs(ckpt, exist_ok=True)
    final = os.path.join(ckpt, f"ckpt-{steps:09d}")
    tmp = tempfile.mkdtemp(dir=ckpt, prefix=".ckpt-tmp-")
    try:
        write(tmp)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"format": "bench_bullet-sb3", "extra": extra}, f)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd, pointer = tempfile.mkstemp(dir=ckpt, prefix=".latest.")
    with os.fdopen(fd, "w") as f:
        f.write(os.path.basename(final))
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer, os.path.join(ckpt, "latest"))
    for name in os.listdir(ckpt):
        if name.startswith("ckpt-") and name != os.path.basename(final):
            shutil.rmtree(os.path.join(ckpt, name), ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


# Settings the loops read when given, beyond those of the entries (``--set`` name=value).
OPTIONAL_HP = frozenset(
    {
        "adam_eps",
        "activation",
        "alpha_lr",
        "anneal_clip",
        "anneal_lr",
        "joint_step",
        "log_std_init",
        "minibatch_norm_advs",
        "ortho_init",
        "sde_per_env_noise",
        "sde_sample_freq",
        "squash_mean",
        "state_std",
        "vf_h_size",
    }
)


def machina_hp(algo: str, env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    entry = hyperparams.lookup(algo, env_id)
    if entry is None:
        raise ValueError(f"--envs: no machina entry for {algo}/{env_id} in example/hyperparams.py")
    if "state_std" in overrides and algo != "sac":
        raise ValueError(f"--set: state_std is SAC's policy option, not used by {algo}")
    if algo == "td3" and overrides.keys() & {"sde_sample_freq", "log_std_init"}:
        raise ValueError("--set: sde_sample_freq and log_std_init are not used by td3")
    if algo == "sac" and overrides.get("state_std") and overrides.get("sde_sample_freq"):
        raise ValueError("--set: state_std and sde_sample_freq are two policies; give one")
    if algo == "sac" and "log_std_init" in overrides and not overrides.get("sde_sample_freq"):
        raise ValueError("--set: SAC reads log_std_init only for its gSDE policy (sde_sample_freq)")
    unknown = sorted(set(overrides) - set(entry) - OPTIONAL_HP)
    if unknown:
        raise ValueError(
            f"--set: unknown setting(s) {unknown} for machina's {algo}; expected names of "
            f"its entry {sorted(entry)} or {sorted(OPTIONAL_HP)}"
        )
    return {**entry, **overrides}


def run_dir(ckpt_dir: str, key: dict[str, Any], path: str, overrides: dict[str, Any]) -> str:
    """The checkpoint folder of one run: named by the run, plus a short hash of the results
    file and the overrides, so that a tuning run (``--set``, another ``--csv``) never
    continues a checkpoint of another configuration."""
    tag = json.dumps([os.path.abspath(path), sorted((k, repr(v)) for k, v in overrides.items())])
    digest = hashlib.sha1(tag.encode()).hexdigest()[:8]
    name = f"{key['lib']}_{key['algo']}_{key['env']}_{key['seed']}_{key['budget']}_{digest}"
    return os.path.join(ckpt_dir, name)


def run_one(lib, algo, env_id, seed, budget, path, overrides, sb3_overrides, ckpt_dir=None) -> None:
    """One run; with ``ckpt_dir``, checkpointed at each evaluation into its own folder there
    and, when that folder holds a checkpoint, continued from it (same CSV attempt)."""
    attempt = time.strftime("%Y%m%dT%H%M%S")
    key = dict(lib=lib, algo=algo, env=env_id, seed=seed, budget=budget, attempt=attempt)
    rec = Recorder(path, key, EVAL_EVERY[algo] if budget >= 50_000 else budget // 4, budget)
    ckpt = None
    if ckpt_dir:
        ckpt = run_dir(ckpt_dir, key, path, overrides if lib == "machina" else sb3_overrides)
    torch.set_num_threads(1)
    if lib == "machina":
        hp = machina_hp(algo, env_id, overrides)
        if algo == "ppo":
            machina_ppo(env_id, seed, budget, rec, hp, ckpt)
        else:
            machina_offpolicy(algo, env_id, seed, budget, rec, hp, ckpt)
    else:
        sb3_run(algo, env_id, seed, budget, rec, {**SB3[algo][env_id], **sb3_overrides}, ckpt)


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = eval(value, {})  # numbers, booleans, tuples from the command line
        except Exception:
            out[name] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (--quick: 100)"
    )
    parser.add_argument("--libs", nargs="+", choices=LIBS, default=list(LIBS))
    parser.add_argument("--budget", type=int, default=None, help="env steps (default per algo)")
    parser.add_argument("--csv", default=None, help=f"results file (default {CSV_PATH})")
    parser.add_argument("--set", nargs="*", default=[], help="machina overrides, name=value")
    parser.add_argument("--sb3_set", nargs="*", default=[], help="SB3 overrides, name=value")
    parser.add_argument(
        "--ckpt_dir",
        default=None,
        help=f"checkpoint folder, one subfolder per run (default {CKPT_DIR}; '' for none)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny budgets, seed 100, into a new temporary folder (unless --csv / "
        "--ckpt_dir), so that it runs every time; draw it with --report --csv FOLDER/"
        "bullet_quick.csv (plots go beside that CSV)",
    )
    parser.add_argument("--report", action="store_true", help="table and plots from the CSV")
    parser.add_argument(
        "--out_dir",
        default=None,
        help="where --report draws its plots (default: assets/ for the committed CSV, the "
        "CSV's own folder for any other, so a smoke run never overwrites the committed plots)",
    )
    args = parser.parse_args()
    if args.quick and not args.report and (args.csv is None or args.ckpt_dir is None):
        # a fixed smoke CSV would hold finished runs after the first smoke run: all skipped
        scratch = tempfile.mkdtemp(prefix="bullet_quick_")
        print(f"smoke run in {scratch}", flush=True)
        args.csv = args.csv or os.path.join(scratch, "bullet_quick.csv")
        if args.ckpt_dir is None:
            args.ckpt_dir = os.path.join(scratch, "ckpt")
    if args.ckpt_dir is None:
        args.ckpt_dir = CKPT_DIR
    path = args.csv or CSV_PATH
    if args.report:
        import bullet_report

        bullet_report.report(path, args.out_dir or bullet_report.default_out_dir(path))
        return
    overrides, sb3_overrides = _parse_set(args.set), _parse_set(args.sb3_set)
    if args.quick:
        overrides = {"random_steps": 500, **overrides}
        sb3_overrides = {"learning_starts": 500, **sb3_overrides}
        if args.seeds is None:  # a smoke run keeps off the reported seeds unless asked
            args.seeds = [100]
    if args.seeds is None:
        args.seeds = [0, 1, 2]
    print(machine(), flush=True)
    done = finished(read_rows(path))
    for algo in args.algos:
        budget = args.budget or ((4096 if algo == "ppo" else 1500) if args.quick else BUDGET[algo])
        for env_id in args.envs:
            for seed in args.seeds:
                libs = args.libs if seed % 2 == 0 else args.libs[::-1]
                for lib in libs:
                    if (lib, algo, env_id, seed, budget) in done:
                        print(f"done already: {lib} {algo} {env_id} seed {seed}", flush=True)
                        continue
                    sb3 = {k: v for k, v in sb3_overrides.items()
                           if algo != "ppo" or k != "learning_starts"}  # fmt: skip
                    ovr = {k: v for k, v in overrides.items()
                           if algo != "ppo" or k != "random_steps"}  # fmt: skip
                    run_one(lib, algo, env_id, seed, budget, path, ovr, sb3, args.ckpt_dir)


if __name__ == "__main__":
    main()
