"""The examples on Ray: run_ppo_distributed_ray.py (Ray sampler actors feeding two trainer
actors that form one torch.distributed group, on a local Ray instance the script starts and
stops; resumed from a checkpoint) and run_ppo.py's Ray sampler on a cluster named by RAY_ADDRESS."""

import os
import subprocess

import pytest
from conftest import (
    assert_same_state,
    crashed_copy,
    example_cmd,
    final_state,
    forget_ray_address,
    run_example,
)


def test_ppo_on_ray_trainers_learns_writes_the_run_and_resumes_bit_for_bit(tmp_path):
    """Three iterations learn; killed after the second one's checkpoint, the run resumes
    (trainers' networks, optimisers and RNGs, the sampler actors' RNGs) to the same end."""
    args = ["--max_steps", 3000, "--steps_per_iter", 1000, "--num_cpus", 2, "--num_trainer", 2,
            "--num_parallel", 2]  # fmt: skip
    run_dir = tmp_path / "run"
    out = run_example("run_ppo_distributed_ray.py", "--log", run_dir, *args).stdout
    assert "CartPole-v1: " in out and "after" in out
    rows = (run_dir / "progress.csv").read_text().splitlines()
    header = rows[0].split(",")
    evals = [float(r.split(",")[header.index("EvalReturn")]) for r in rows[1:]]
    assert len(evals) >= 3
    # Untrained CartPole policies last about 10-30 steps deterministically; three PPO updates
    # shared by both ranks must lift the greedy return.
    assert evals[-1] > evals[0]
    assert (run_dir / "models" / "pol_last.pt").stat().st_size > 0

    crashed = crashed_copy(run_dir, tmp_path / "crashed")
    # another setting is refused before Ray starts (it took Ray's ~10 s start-up before)
    other = [str(a) for a in args]
    other[other.index("--steps_per_iter") + 1] = "500"
    refused = subprocess.run(
        example_cmd("run_ppo_distributed_ray.py", "--resume", crashed, *other),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "steps_per_iter: saved 1000, given 500" in refused.stderr
    assert "Started a local Ray instance" not in refused.stderr
    run_example("run_ppo_distributed_ray.py", "--resume", crashed, *args)
    whole = final_state(run_dir)
    assert len(whole["trainers"]["ranks"]) == 2
    assert_same_state(whole, final_state(crashed), "run_ppo_distributed_ray.py")


def test_run_ppo_samples_on_the_ray_cluster_that_ray_address_names(tmp_path):
    """The README's driver line: ``RAY_ADDRESS=... python example/run_ppo.py --sampler_backend
    ray`` runs its sampler actors on that cluster (here a one-node cluster this test starts
    and stops), not on a Ray instance of its own."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    forget_ray_address(cluster.address)
    try:
        args = ["--log", tmp_path, "--sampler_backend", "ray", "--num_parallel", 2]
        args += ["--num_envs", 2, "--max_steps", 1024, "--epoch_per_iter", 2, "--eval_epis", 2]
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        run_example("run_ppo.py", *args, env=env)
        assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0
        ray.init(address=cluster.address, log_to_driver=False, logging_level="warning")
        actors = [
            a for a in ray._private.state.actors().values() if a["ActorClassName"] == "EngineActor"
        ]
        assert len(actors) == 2, actors  # the example's two sampler actors ran here
    finally:
        ray.shutdown()
        cluster.shutdown()
