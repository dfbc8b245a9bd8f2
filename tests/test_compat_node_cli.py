"""The original machina's DistributedEpiSampler node command still runs (on Ray it only
tells the user how a node joins the cluster), and its sampler test runs on one machine."""

import contextlib
import os
import shutil
import signal
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


def start_redis(children):
    # A port free when chosen is not reserved: if another process takes it first, this
    # server exits, and another port is tried.
    for _ in range(5):
        port = free_port()
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no"]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        children.append(server)
        for _ in range(100):
            if server.poll() is not None:
                break
            if answers(port):
                return server, port
            time.sleep(0.1)
        server.kill()
        server.wait(30)
    raise AssertionError("redis-server did not answer on five ports")


env = GymEnv("Pendulum-v1")
pol = RandomPol(env.observation_space, env.action_space)
children = []
try:
    if shutil.which("redis-server"):
        server, port = start_redis(children)
        print("redis-server answered")
    else:
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        children.append(server)
    node = [sys.executable, "-m", "machina.samplers.distributed_epi_sampler", "--world_size",
            "1", "--rank", "0", "--redis_host", "127.0.0.1", "--redis_port", str(port)]
    node = subprocess.Popen(node, stdout=subprocess.PIPE, text=True)
    children.append(node)
    said, _ = node.communicate(timeout=120)
    assert node.returncode == 0 and "ray start --address=" in said, (node.returncode, said)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_redis warns that machina does not use Redis
        make_redis("127.0.0.1", str(port))
    sampler = DistributedEpiSampler(1, -1, env, pol, num_parallel=1)
    epis = sampler.sample(pol, max_epis=2)
    assert len(epis) >= 2 and sampler.backend == "process"
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert server.poll() is None, "the server exited before the SIGTERMs"
    for child in psutil.Process(os.getpid()).children(recursive=True):
        child.send_signal(signal.SIGTERM)
    server.wait(30)
    del sampler
finally:
    for child in children:
        if child.poll() is None:
            child.kill()
    for child in children:
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
    # its own process group: on a timeout the group goes, the servers it started included
    proc = subprocess.Popen(
        [sys.executable, "-c", ORIGINAL_TEST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.strip().endswith("alive")
    if shutil.which("redis-server"):
        assert "redis-server answered" in stdout
