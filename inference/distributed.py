"""Process groups for the context-parallel worker: which rank this is, its device, and collectives that fail loudly.

Two groups over the same ranks plus the group's key-value store (torch.distributed, no other transport):
- the default group (NCCL when every rank is on a GPU, gloo otherwise) carries the per-layer tensors;
- "meta" (gloo, same short timeout) gathers small Python results (sync counts, stats);
- the store (the TCPStore the group was set up with) carries rank 0's numbered commands: rank 0 writes a copy
  for each follower and goes on (a frozen follower cannot block it), each follower waits for its copy as long as
  it is idle and deletes it once read.
Every collective has a timeout; any failure (a dead or frozen rank, a broken socket) is raised as
DistributedFailure, after which the ranks are out of step and the worker must restart.

Ranks come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or from
`--devices` (rank 0 then starts the other ranks itself, see inference/cp_engine.py).
Non-job: no model, cache or attention logic.
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import socket
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("msa.distributed")
IDLE_TIMEOUT = datetime.timedelta(days=30)  # followers wait this long for the next command
# NVLink multicast can take a shared host's GPUs down: keep it off in everything we start.
SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


class DistributedFailure(RuntimeError):
    """A rank died, froze or failed mid-command: the ranks are out of step and the worker must restart."""

    fatal = True


def parse_devices(spec: str | None) -> list[str]:
    """"0,1" -> ["cuda:0", "cuda:1"]; "cpu,cpu" -> ["cpu", "cpu"]; "cuda:1,cuda:0" kept as given."""
    if not spec:
        return []
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if item.isdigit():
            out.append(f"cuda:{item}")
        elif item == "cpu" or item.startswith("cuda"):
            out.append(item)
        else:
            raise ValueError(f"--devices takes a comma list of GPU numbers or 'cpu' (e.g. 0,1), got {item!r}")
    return out


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_follower() -> bool:
    """True in a rank > 0 of a torchrun launch (or a rank started by rank 0): it follows, it serves no socket."""
    return launched_by_torchrun() and int(os.environ["RANK"]) > 0


def wants_context_parallel(devices_spec: str | None) -> bool:
    return launched_by_torchrun() or len(parse_devices(devices_spec)) > 1


def rank_device(rank: int, devices_spec: str | None) -> str:
    """This rank's device: its entry of --devices, else cuda:LOCAL_RANK when GPUs exist, else cpu."""
    devices = parse_devices(devices_spec)
    local = int(os.environ.get("LOCAL_RANK", rank))
    if devices:
        if local >= len(devices):
            raise ValueError(f"local rank {local} has no entry in --devices {devices_spec!r}")
        return devices[local]
    return f"cuda:{local}" if torch.cuda.is_available() else "cpu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMAND_PIECE = 4 << 20  # bytes per store message of a command (the TCP store refuses messages over 8 MiB)


@dataclass
class Comm:
    """This rank's view of the group: rank, world size, device and the three process groups."""

    rank: int
    world: int
    device: torch.device
    timeout_s: float

    @classmethod
    def join(cls, rank: int, world: int, device: str, *, timeout_s: float = 60.0) -> "Comm":
        for key, value in SAFE_ENV.items():
            os.environ.setdefault(key, value)
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout,
                                    **({"device_id": dev} if backend == "nccl" else {}))
            comm = cls(rank, world, dev, timeout_s)
            comm.meta = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else dist.group.WORLD
            comm.store = dist.PrefixStore("msa-cp-command/", dist.distributed_c10d._get_default_store())
            if rank:
                comm.store.set_timeout(IDLE_TIMEOUT)  # followers wait for commands while the worker idles
            comm.sent = comm.received = 0
        except Exception as exc:
            raise DistributedFailure(f"rank {rank}/{world}: cannot join the process group: {exc}") from exc
        log.info("rank %d/%d joined on %s (%s)", rank, world, dev, backend)
        return comm

    # ---- commands (rank 0 -> followers) ----------------------------------------------------------------
    def send_command(self, command) -> None:
        """Rank 0: one copy of command n for each follower; each follower deletes its own copy once read, so
        rank 0 never waits for a follower here (a command need not include a collective). A command larger than
        the store's message limit (8 MiB; a sync of a big repository carries its files' text) travels in pieces:
        the extra pieces first, then the head (piece count + first piece) that the follower waits for."""
        n, data = self.sent, pickle.dumps(command)
        pieces = [data[i : i + COMMAND_PIECE] for i in range(0, len(data), COMMAND_PIECE)] or [b""]
        for rank in range(1, self.world):
            for i, piece in enumerate(pieces[1:], 1):
                self._call("send a command", self.store.set, f"{n}/{rank}/{i}", piece)
            self._call("send a command", self.store.set, f"{n}/{rank}", len(pieces).to_bytes(4, "little") + pieces[0])
        self.sent += 1

    def receive_command(self):
        if self.received:  # the previous head, deleted while this rank idles until the next command
            self._call("receive a command", self.store.delete_key, f"{self.received - 1}/{self.rank}")
        key = f"{self.received}/{self.rank}"
        head = self._call("receive a command", self.store.get, key)
        data = [head[4:]]
        for i in range(1, int.from_bytes(head[:4], "little")):
            data.append(self._call("receive a command", self.store.get, f"{key}/{i}"))
            self._call("receive a command", self.store.delete_key, f"{key}/{i}")
        self.received += 1
        return pickle.loads(b"".join(data))

    # ---- collectives ------------------------------------------------------------------------------------
    def gather_objects(self, obj) -> list:
        """Every rank's `obj`, on every rank (small Python values)."""
        out = [None] * self.world
        self._call("gather results", dist.all_gather_object, out, obj, group=self.meta)
        return out

    def all_gather(self, tensor: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[world, *tensor.shape]: every rank's tensor, on every rank (same order, so merges agree bitwise); into
        `out` when given (a buffer a CUDA graph can replay the collective into)."""
        tensor = tensor.contiguous()
        if out is None:
            out = torch.empty((self.world, *tensor.shape), device=tensor.device, dtype=tensor.dtype)
        if self.device.type == "cuda":
            self._call("all-gather", dist.all_gather_into_tensor, out, tensor)
        else:
            self._call("all-gather", dist.all_gather, list(out.unbind(0)), tensor)
        return out

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise DistributedFailure(f"rank {self.rank}/{self.world}: {what} failed ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}); a rank died or froze") from exc

    def close(self, timeout_s: float = 20.0) -> bool:
        """Tear the group down; NCCL's teardown can block on a peer that already left, so it gets a deadline.
        False when it is still blocked: a process of its own should then end with os._exit (a normal exit would
        abort on the blocked thread)."""
        if not dist.is_initialized():
            return True

        def destroy():
            try:
                dist.destroy_process_group()
            except Exception as exc:  # a group broken by a dead rank cannot always be torn down cleanly
                log.warning("rank %d: process group teardown: %s", self.rank, exc)

        teardown = threading.Thread(target=destroy, daemon=True, name="group-teardown")
        teardown.start()
        teardown.join(timeout_s)
        if teardown.is_alive():
            log.warning("rank %d: process group teardown still blocked after %.0f s; left to the process's end",
                        self.rank, timeout_s)
        return not teardown.is_alive()
