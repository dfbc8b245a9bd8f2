"""The original machina's DistributedEpiSampler node command still runs (on Ray it only
tells the user how a node joins the cluster)."""

import subprocess
import sys


def test_original_node_command_exits_cleanly_and_says_how_to_join():
    cmd = [sys.executable, "-m", "machina.samplers.distributed_epi_sampler"]
    args = ["--world_size", "1", "--rank", "0", "--redis_host", "localhost", "--redis_port", "6379"]
    out = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ray start --address=" in out.stdout
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--world_size" in bad.stderr
