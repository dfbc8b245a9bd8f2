"""The original machina's DistributedEpiSampler node command still runs (on Ray it only
tells the user how a node joins the cluster), and its sampler test runs on one machine."""

import os
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


# machina 0.x's own test_distributed_epi_sampler, as it runs on gymnasium: it starts a
# redis-server and 0.x's node command, samples on one machine, then sends SIGTERM to every
# child process of the test. With a private Ray, the raylet was among them and its loss
# ended the test process (rc 1, no output) now and then. A real redis-server where one is
# on PATH (.ci/run installs Debian's), on loopback and a free port; else a sleeping stand-in.
ORIGINAL_TEST = r"""
import os, shutil, signal, socket, subprocess, sys, time, warnings
import numpy as np
import psutil
from machina.envs import GymEnv
from machina.pols.random_pol import RandomPol
from machina.samplers import DistributedEpiSampler, EpiSampler
from machina.utils import make_redis

env = GymEnv("Pendulum-v1")
pol = RandomPol(env.observation_space, env.action_space)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
if shutil.which("redis-server"):
    server = [
        "redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"
    ]
else:
    server = [sys.executable, "-c", "import time; time.sleep(120)"]
node = [sys.executable, "-m", "machina.samplers.distributed_epi_sampler", "--world_size", "1",
        "--rank", "0", "--redis_host", "127.0.0.1", "--redis_port", port]
children = [subprocess.Popen(server, stdout=subprocess.DEVNULL), subprocess.Popen(node)]
try:
    if server[0] == "redis-server":  # the real server answers on loopback
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as c:
                    c.sendall(b"PING\r\n")
                    assert c.recv(16) == b"+PONG\r\n"
                print("redis-server answered")
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        else:
            raise AssertionError("redis-server did not answer on port " + port)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_redis warns that machina does not use Redis
        make_redis("127.0.0.1", port)
    sampler = DistributedEpiSampler(1, -1, env, pol, num_parallel=1)
    epis = sampler.sample(pol, max_epis=2)
    assert len(epis) >= 2 and sampler.backend == "process"
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    for child in psutil.Process(os.getpid()).children(recursive=True):
        child.send_signal(signal.SIGTERM)
    for child in children:
        child.wait(30)
    del sampler
finally:
    for child in children:
        child.kill()
        child.wait(30)

# Ray-only arguments at their defaults (a script's address=None) do not ask for Ray
one = DistributedEpiSampler(1, env=env, pol=pol, address=None, num_cpus=1, max_retries=2)
assert one.backend == "process"
one.close()

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    two = DistributedEpiSampler(2, env=env, pol=pol, num_parallel=4, seed=0)
assert two.backend == "process" and any("no Ray cluster" in str(w.message) for w in caught)
ref = EpiSampler(env, pol, num_parallel=4, seed=0)
a, b = two.sample(pol, max_epis=4), ref.sample(pol, max_epis=4)
two.close(), ref.close()
assert len(a) == len(b) == 4
for ea, eb in zip(a, b):
    for key in ("obs", "acs", "rews", "terms", "truncs"):
        np.testing.assert_array_equal(ea[key], eb[key])
print("alive")
"""


def test_original_distributed_sampler_test_on_one_machine_needs_no_ray():
    """No Ray cluster to join: DistributedEpiSampler samples with EpiSampler's processes
    (the same episodes), starts no Ray, and survives 0.x's test killing its children."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", ORIGINAL_TEST], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("alive")
