"""Rank 0's commands reach the followers whole and in order, including one larger than the TCP store's 8 MiB
message limit (a sync of a big repository carries its files' text). Two real gloo ranks in their own processes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

from inference import distributed

RANK = """
import hashlib, json, random, sys
from inference.distributed import Comm
rank = int(sys.argv[1])
comm = Comm.join(rank, 2, "cpu", timeout_s=60)
if rank == 0:
    comm.send_command(("sync", random.Random(7).randbytes(19 << 20)))
    comm.send_command(("stats", {"small": True}))
    print(json.dumps(comm.gather_objects(None)[1]))
else:
    big, small = comm.receive_command(), comm.receive_command()
    comm.gather_objects([big[0], hashlib.sha256(big[1]).hexdigest(), len(big[1]), small[0], small[1]])
comm.close()
"""


def test_a_command_larger_than_the_store_limit_arrives_whole_and_in_order():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(distributed.free_port()), PYTHONPATH=root)
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(rank)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    want = hashlib.sha256(random.Random(7).randbytes(19 << 20)).hexdigest()
    assert json.loads(outs[0][0].strip().splitlines()[-1]) == ["sync", want, 19 << 20, "stats", {"small": True}]
