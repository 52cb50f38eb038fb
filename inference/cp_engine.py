"""Context-parallel engine: the repository cache spread over ranks (GPUs, or CPU processes with gloo), one Engine API.

Every rank loads the weights and keeps its own pages. Rank 0 is a full `Engine` (tokenizer, FIM, sampling, the
live tail) that owns the worker's socket; it decides which rank holds each file (new and edited files go to the
rank with the fewest tokens) and sends each step's inputs to the other ranks, which follow (`follow`). All ranks
run the same forward; inference/cp_attention.py makes each layer's repository attention exact across ranks.

The live tail is attended once, on rank 0 (only rank 0 stores its KV): its causal self-attention travels beside
rank 0's partial in the cross-rank merge, so no rank repeats it and the merge sees it exactly once. Followers
skip the lm_head; rank 0 samples and sends the next token with the next step. Generated tokens run through the
general forward (decode "plain") or every rank's fixed-shape step, captured in a CUDA graph on GPUs (decode "graph",
the default there; "static" uncaptured), see inference/cp_decode_graph.py; stats()["decode"] says which ran.

Only the "parallel" layout is spread (its segments depend on the shared prefix alone, which every rank caches);
"offsets" and "sequential" would need other ranks' segments as context and are refused.

    engine = cp_engine.start(model_dir, options, devices="0,1")   # rank 0; starts ranks 1.. itself
    python -m torch.distributed.run --nproc-per-node 2 -m lsp worker ...   # or torchrun: every rank runs the worker
Non-job: the collectives (inference/distributed.py), attention math (inference/cp_attention.py), sockets.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from types import SimpleNamespace

import torch

from inference import distributed
from inference.attention import attend_dense
from inference.cp_attention import CommTimer, ShardedRepoAttention, ShardView
from inference.cp_decode_graph import ContextParallelDecoder
from inference.attention import RepoView
from inference.distributed import Comm, DistributedFailure
from inference.engine import Engine

log = logging.getLogger("msa.cp")


class Shard:
    """One rank's engine plus the global table of who holds which file's blocks."""

    def __init__(self, engine: Engine, comm: Comm):
        if engine.layout != "parallel":
            raise ValueError(f"context parallel needs the 'parallel' layout, not {engine.layout!r}")
        self.engine, self.comm = engine, comm
        self.order: list[str] = []  # every file, in the one-rank order
        self.pages: dict[str, list[int]] = {}  # path -> pages of each of its parts (on its owner)
        self.first_block: dict[str, int] = {}  # path -> global id of its first block
        self.total_blocks = 0
        self._views: dict[tuple, ShardView] = {}
        self.timer = CommTimer()
        self.decoder: ContextParallelDecoder | None = None

    # ---- sync -------------------------------------------------------------------------------------------
    def apply_sync(self, plan: dict) -> dict:
        repo, rank = self.engine.repo, self.comm.rank
        try:
            counts = dict(repo.sync(plan["add"][rank], plan["drop"][rank]))
            counts["parts"] = [(p.path, self.engine.store.segments[p.key].n_pages) for p in repo.parts]
        except Exception as exc:  # reported to every rank: a half-applied sync puts the ranks out of step
            log.exception("rank %d: sync failed", rank)
            counts = {"error": f"{type(exc).__name__}: {exc}"}
        results = self.comm.gather_objects(counts)
        failed = [(r, res["error"]) for r, res in enumerate(results) if "error" in res]
        if failed:
            raise DistributedFailure("; ".join(f"rank {r}: {msg}" for r, msg in failed))
        self.order = list(plan["order"])
        self.pages = {}
        for res in results:
            for path, n in res["parts"]:
                self.pages.setdefault(path, []).append(n)
        offset = self.engine.store.segments[repo.prefix_key].n_pages
        self.first_block = {}
        for path in self.order:
            self.first_block[path] = offset
            offset += sum(self.pages.get(path, []))
        self.total_blocks = offset
        self._views.clear()
        return {"results": results}

    def view(self, live_path: str | None) -> ShardView:
        engine, repo, store = self.engine, self.engine.repo, self.engine.store
        parts = [p for p in repo.parts if p.path != live_path]
        keys = ([repo.prefix_key] if self.comm.rank == 0 else []) + [p.key for p in parts]
        store.ensure_resident(keys)
        for k in keys:
            store.touch(store.segments[k])
        cache_key = (live_path, repo.version, store.generation)
        if cache_key not in self._views:
            pages, gids = [], []
            if self.comm.rank == 0:
                pages += store.segments[repo.prefix_key].pages
                gids += list(range(len(pages)))
            seen: dict[str, int] = {}
            for p in parts:
                seg_pages = store.segments[p.key].pages
                first = self.first_block[p.path] + seen.get(p.path, 0)
                seen[p.path] = seen.get(p.path, 0) + len(seg_pages)
                pages += seg_pages
                gids += range(first, first + len(seg_pages))
            ids = torch.tensor(gids, dtype=torch.int64, device=engine.device)
            if gids and bool((ids[1:] < ids[:-1]).any()):
                raise RuntimeError(f"rank {self.comm.rank}: local blocks are not in global order")
            n_global = self.total_blocks - sum(self.pages.get(live_path, [])) if live_path else self.total_blocks
            self._views[cache_key] = ShardView(RepoView.build(engine.pool, pages), ids, n_global)
        return self._views[cache_key]

    # ---- forward ----------------------------------------------------------------------------------------
    def attention(self, live_path, attention: str, top_k: int, summary_mode: str) -> ShardedRepoAttention:
        attn = ShardedRepoAttention(self.comm, self.engine.pool, self.view(live_path), sparse=attention == "sparse",
                                    top_k=top_k, summary_mode=summary_mode, timer=self.timer)
        attn.live_path = live_path
        return attn

    def forward(self, ids: list[int], first_position: int, attn: ShardedRepoAttention, *, tail=None,
                tail_start: int = 0, logits: str = "none"):
        """Runs `ids` at positions first_position.. through the model; `tail` (rank 0 only) stores and attends the
        live tail's own KV from tail offset `tail_start` on."""
        dev = self.engine.device
        n = len(ids)
        positions = torch.arange(first_position, first_position + n, device=dev)

        def attend(layer, q, k, v, index_q, index_k):
            part, own = attn.partial(layer, q, index_q), None
            if tail is not None:
                tail.k[layer, :, tail_start : tail_start + n] = k.transpose(0, 1)
                tail.v[layer, :, tail_start : tail_start + n] = v.transpose(0, 1)
                own = attend_dense(q, tail.k[layer, :, : tail_start + n], tail.v[layer, :, : tail_start + n],
                                   causal_start=tail_start)
            return attn.combine(part, own)  # the tail's part travels beside rank 0's own

        with torch.inference_mode():
            return self.engine.model(torch.tensor(ids, device=dev), positions, attend, logits=logits)

    def begin_decoder(self, request: dict, tail) -> ContextParallelDecoder:
        """Points this rank's fixed-shape decode step at a request (`tail`: rank 0's live tail, else None)."""
        graph = request["decode"] == "graph"
        if self.decoder is None:
            self.decoder = ContextParallelDecoder(self.engine.model, self.engine.pool, self.comm, capture=graph)
        self.decoder.capture = graph and self.decoder.fallback is None  # a failed capture is not retried
        self.decoder.begin(tail, self.view(request["live_path"]), sparse=request["attention"] == "sparse",
                           top_k=request["top_k"], summary_mode=request["summary_mode"],
                           collectives=request["collectives"])
        return self.decoder

    def local_stats(self) -> dict:
        e = self.engine
        return dict(rank=self.comm.rank, device=str(e.device), segments=len(e.repo.parts),
                    tokens=sum(p.n_kept for p in e.repo.parts), pages=e.pool.used_pages,
                    bytes=e.store.device_bytes(), capacity_pages=e.pool.capacity, host_bytes=e.store.host_bytes(),
                    evictions=e.store.evictions, pid=os.getpid(),
                    peak_device_bytes=torch.cuda.max_memory_allocated(e.device) if e.device.type == "cuda" else None)


class ContextParallelEngine(Engine):
    """Rank 0: the Engine API over a repository cache spread across `comm.world` ranks."""

    def __init__(self, model_dir, *, comm_factory, followers=(), **options):
        super().__init__(model_dir, **options)
        self.comm: Comm = comm_factory(self.device)
        self.followers = list(followers)  # processes this rank started (empty under torchrun)
        self.owner: dict[str, int] = {}  # path -> rank holding it
        self.global_files: OrderedDict[str, str] = OrderedDict()  # path -> text, one-rank order
        self.file_tokens: dict[str, int] = {}
        self.failure: str | None = None
        self._closing = False
        self.on_failure = None  # called (from the watchdog thread) with the reason when a follower dies
        self.collectives = "nccl"  # "local": benchmark-only decode steps without collectives (wrong results)
        try:
            self.shard = Shard(self, self.comm)
            empty = [[] for _ in range(self.comm.world)]
            self._apply({"order": [], "add": empty, "drop": [list(x) for x in empty]})
        except BaseException:
            self.comm.close()
            raise
        if self.followers:
            threading.Thread(target=self._watch_followers, daemon=True, name="cp-watchdog").start()

    # ---- commands ---------------------------------------------------------------------------------------
    def _command(self, op: str, payload, run):
        """Send a command to the followers and run rank 0's share; any failure breaks the group for good."""
        if self.failure:
            raise DistributedFailure(f"the rank group is broken ({self.failure}); the worker must restart")
        try:
            self.comm.send_command((op, payload))
            return run()
        except Exception as exc:
            reason = self.failure or (str(exc) if isinstance(exc, DistributedFailure) else f"rank 0 failed in {op}: "
                                      f"{type(exc).__name__}: {exc}")
            self.failure = reason
            raise DistributedFailure(reason) from exc

    def command(self, op: str, payload, run):
        """Sends a command of the caller's own (see serve_commands' extra_ops) and runs `run()` as rank 0's share."""
        if op in ("stop", "sync", "forward", "decode", "step", "stats"):
            raise ValueError(f"{op!r} is one of the engine's own commands")
        return self._command(op, payload, run)

    def _apply(self, plan: dict) -> dict:
        return self._command("sync", plan, lambda: self.shard.apply_sync(plan))

    def _sync_cache(self, add: list, drop: list) -> dict:
        for entry in add:
            if len(entry) != 3 or not isinstance(entry[0], str) or not isinstance(entry[2], str):
                raise ValueError("sync add entries must be (path: str, content_hash, text: str)")
        if not all(isinstance(p, str) for p in drop):
            raise ValueError("sync drop entries must be paths (str)")
        world = self.comm.world
        plan = {"add": [[] for _ in range(world)], "drop": [[] for _ in range(world)]}
        for path in drop:
            if path in self.owner:
                plan["drop"][self.owner.pop(path)].append(path)
            self.global_files.pop(path, None)
            self.file_tokens.pop(path, None)
        load = [0] * world
        for path, rank in self.owner.items():
            load[rank] += self.file_tokens[path]
        for entry in add:
            path, _, text = entry
            if self.global_files.get(path) == text:
                continue
            if path in self.owner:  # edited: leaves its rank, lands on the least-loaded one
                old = self.owner.pop(path)
                load[old] -= self.file_tokens[path]
                plan["drop"][old].append(path)
            self.global_files.pop(path, None)
            self.global_files[path] = text
            self.file_tokens[path] = len(self.tok.encode(self.fim.file_header(path, text) + text))
            rank = least_loaded(load)
            load[rank] += self.file_tokens[path]
            self.owner[path] = rank
            plan["add"][rank].append(tuple(entry))
        plan["order"] = list(self.global_files)
        results = self._apply(plan)["results"]
        out = {k: sum(r[k] for r in results) for k in ("prefilled_tokens", "reused_segments", "loaded_from_disk")}
        out["reused_segments"] -= world - 1  # every rank re-checks its own copy of the shared prefix
        out["segments"] = sum(r["segments"] for r in results)
        out["tokens"] = sum(r["tokens"] - self.repo.prefix_len for r in results) + self.repo.prefix_len
        out["ranks"] = [dict(rank=i, segments=r["segments"], tokens=r["tokens"] - self.repo.prefix_len)
                        for i, r in enumerate(results)]
        return out

    def _repo_attention(self, live_path: str):
        attn = self.shard.attention(live_path, self.attention, self.top_k, self.summary_mode)
        attn_view = SimpleNamespace(n_blocks=attn.shard.n_global)
        key = (live_path, self.repo.version, self.store.generation, self.repo.tail_position(), self.attention,
               self.top_k, self.summary_mode, self.shard.total_blocks)
        return _GlobalView(attn, attn_view), key

    def _begin_decoder(self, repo_attn):
        """decode "plain": None, every step goes through _run_tail (the general forward on every rank); "static" /
        "graph": every rank's fixed-shape step (inference/cp_decode_graph.py), driven by one command per token."""
        if self.decode == "plain":
            return None
        attn = repo_attn.inner
        request = dict(live_path=attn.live_path, attention=self.attention, top_k=self.top_k,
                       summary_mode=self.summary_mode, decode=self.decode, collectives=self.collectives)
        decoder = self._command("decode", request, lambda: self.shard.begin_decoder(request, self._tail))
        return _RankSteps(self, decoder)

    def _run_tail(self, new_ids, start, repo_attn, logits):
        attn = repo_attn.inner
        tail = self._tail
        tail.grow(start + len(new_ids))
        first = self.repo.tail_position() + start
        payload = dict(ids=list(new_ids), first=first, live_path=attn.live_path, attention=self.attention,
                       top_k=self.top_k, summary_mode=self.summary_mode)

        def run():
            out = self.shard.forward(list(new_ids), first, attn, tail=tail, tail_start=start, logits=logits)
            tail.ids = tail.ids[:start] + list(new_ids)
            return out

        return self._command("forward", payload, run)

    def stats(self) -> dict:
        out = super().stats()
        ranks = self._command("stats", None, lambda: self.comm.gather_objects(self.shard.local_stats()))
        out.update(segments=sum(r["segments"] for r in ranks), pages=sum(r["pages"] for r in ranks),
                   bytes=sum(r["bytes"] for r in ranks), host_bytes=sum(r["host_bytes"] for r in ranks),
                   tokens=sum(r["tokens"] for r in ranks) + self.repo.prefix_len, ranks=ranks,
                   devices={f"rank{r['rank']}:{r['device']}": dict(pages=r["pages"], bytes=r["bytes"],
                                                                   capacity_pages=r["capacity_pages"]) for r in ranks})
        out["decode"] = self.decode_state()
        return out

    def decode_state(self) -> dict:
        """How decode steps run: mode as asked, path taken ("plain", "static" or "graph") and why a graph was
        given up (None unless a capture failed)."""
        decoder = self.shard.decoder
        fallback = decoder.fallback if decoder is not None else None
        path = "static" if self.decode == "graph" and fallback else self.decode
        return dict(mode=self.decode, path=path, fallback=fallback)

    def info(self) -> dict:
        out = super().info()
        out.update(world_size=self.comm.world, context_parallel=True, decode=self.decode_state())
        return out

    def owners(self) -> dict[str, int]:
        return dict(self.owner)

    # ---- life -------------------------------------------------------------------------------------------
    def _watch_followers(self) -> None:
        while not self.failure:
            for rank, proc in enumerate(self.followers, start=1):
                code = proc.poll()
                if code is not None and not self._closing:
                    self.failure = f"rank {rank} exited with status {code}"
                    log.error("context parallel: %s", self.failure)
                    if self.on_failure is not None:
                        self.on_failure(self.failure)
                    return
            time.sleep(0.2)

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        if not self.failure:
            try:
                self.comm.send_command(("stop", None))
            except DistributedFailure as exc:
                log.warning("stopping followers: %s", exc)
        deadline = time.monotonic() + (timeout if not self.failure else 0.0)  # a broken group stops at once
        for proc in self.followers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.failure:  # a collective may still hang on the dead rank (NCCL): no teardown, the process just ends
            return
        self.shard.decoder = None  # its CUDA graphs hold NCCL work: released before the group
        self.comm.close()


class _RankSteps:
    """Engine._complete's fixed-shape decoder on rank 0: each token is sent to every rank as a command."""

    def __init__(self, engine: ContextParallelEngine, decoder: ContextParallelDecoder):
        self.engine, self.decoder = engine, decoder

    def step(self, token: int, slot: int, position: int) -> torch.Tensor:
        recapture = self.decoder.plan(slot)
        return self.engine._command("step", (token, slot, position, recapture),
                                    lambda: self.decoder.step(token, slot, position, recapture=recapture))

    def selection_counts(self):
        return self.decoder.selection_counts()


class _GlobalView:
    """What Engine._complete reads from its repository attention: the whole view's size and selection stats."""

    def __init__(self, inner: ShardedRepoAttention, view):
        self.inner, self.view = inner, view

    @property
    def stats(self):
        return self.inner.stats


def least_loaded(load: list[int]) -> int:
    """The rank a new or edited file goes to: fewest tokens held, ties to the lower rank."""
    return min(range(len(load)), key=lambda r: (load[r], r))


# ---- starting ranks --------------------------------------------------------------------------------------
def start(model_dir: str | None, options: dict, *, devices: str | None = None, timeout_s: float = 60.0):
    """Rank 0 of a context-parallel engine. Under torchrun the ranks exist already; with `devices` (two or more
    entries) this process is rank 0 on the first and starts one follower process per other device."""
    options = {k: v for k, v in options.items() if k != "device"}
    if options.get("layout", "parallel") != "parallel":
        raise ValueError(f"context parallel needs the 'parallel' layout, not {options['layout']!r}")
    followers = []
    if distributed.launched_by_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if rank != 0:
            raise RuntimeError("start() is for rank 0; other ranks call follow_main()")
        device = distributed.rank_device(0, devices)
    else:
        listed = distributed.parse_devices(devices)
        world, device = len(listed), listed[0]
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(distributed.free_port())
        spec = json.dumps({"model_dir": model_dir, "options": options, "devices": devices, "timeout_s": timeout_s})
        for rank in range(1, world):
            env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MSA_CP_PARENT="1",
                       MSA_CP_THREADS=str(torch.get_num_threads()), **distributed.SAFE_ENV)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [_root(), env.get("PYTHONPATH")]))
            followers.append(subprocess.Popen([sys.executable, "-m", "inference.cp_engine", spec], env=env,
                                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))

    def comm_factory(dev):
        return Comm.join(0, world, str(dev), timeout_s=timeout_s)

    try:
        return ContextParallelEngine(model_dir, comm_factory=comm_factory, followers=followers, device=device, **options)
    except BaseException:
        for proc in followers:
            proc.kill()
            proc.wait()
        raise


def follow(model_dir: str | None, options: dict, *, devices: str | None, timeout_s: float) -> int:
    """A rank > 0: load the model on this rank's device, join the group, run rank 0's commands until 'stop'."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = distributed.rank_device(rank, devices)
    options = {k: v for k, v in options.items() if k != "device"}
    if os.environ.get("MSA_CP_PARENT") == "1":  # started by rank 0: its end closes our stdin
        threading.Thread(target=_exit_with_stdin, daemon=True, name="parent").start()
    if os.environ.get("MSA_CP_THREADS"):  # CPU ranks: rank 0's thread count, so that every rank's GEMMs (and
        torch.set_num_threads(int(os.environ["MSA_CP_THREADS"]))  # so tied block scores) round exactly alike
    engine = Engine(model_dir, device=device, **options)
    comm = Comm.join(rank, world, str(engine.device), timeout_s=timeout_s)
    return serve_commands(engine, comm)


def serve_commands(engine: Engine, comm: Comm, extra_ops: dict | None = None) -> int:
    """A follower's loop: run rank 0's commands on this rank's engine until 'stop'. `extra_ops` (op ->
    function(engine, payload)) adds commands of the caller's own, e.g. a benchmark's; rank 0 sends them with
    ContextParallelEngine.command."""
    rank = comm.rank
    shard = Shard(engine, comm)
    while True:
        op, payload = comm.receive_command()
        if op == "stop":
            break
        if op == "sync":
            shard.apply_sync(payload)
        elif op == "forward":
            attn = shard.attention(payload["live_path"], payload["attention"], payload["top_k"], payload["summary_mode"])
            shard.forward(payload["ids"], payload["first"], attn)
        elif op == "decode":
            shard.begin_decoder(payload, None)
        elif op == "step":
            token, slot, position, recapture = payload
            shard.decoder.step(token, slot, position, recapture=recapture)
        elif op == "stats":
            comm.gather_objects(shard.local_stats())
        elif extra_ops and op in extra_ops:
            extra_ops[op](engine, payload)
        else:
            raise RuntimeError(f"rank {rank}: unknown command {op!r}")
    shard.decoder = None  # its CUDA graphs hold NCCL work: released before the group
    if not comm.close():
        logging.shutdown()
        os._exit(0)  # a follower owns its process; a normal exit would abort on the blocked teardown
    return 0


def follow_main(args) -> int:
    """`msa-lsp worker` on a torchrun rank > 0."""
    from inference.worker import engine_options

    logging.basicConfig(level=os.environ.get("MSA_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format=f"%(asctime)s rank{os.environ.get('RANK')} %(levelname)s %(message)s")
    return follow(args.model or None, engine_options(args), devices=args.devices, timeout_s=args.rank_timeout)


def _exit_with_stdin() -> None:
    while sys.stdin.buffer.read(4096):
        pass
    log.error("rank %s: rank 0 is gone; exiting", os.environ.get("RANK"))
    os._exit(3)


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("MSA_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format=f"%(asctime)s rank{os.environ.get('RANK')} %(levelname)s %(message)s")
    spec = json.loads(sys.argv[1])
    try:
        code = follow(spec["model_dir"], spec["options"], devices=spec["devices"], timeout_s=spec["timeout_s"])
    except DistributedFailure as exc:
        log.error("%s", exc)
        code = 2
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: the stdin watcher thread may be mid-read
