"""Running the sweep as one rank of several (``torchrun --nproc-per-node N -m ecomeasure.bench``).

Each rank generates and meters on its own GPU (``cuda:LOCAL_RANK``), runs its share of the
configurations (``shard.assign``) and appends to the shared ``--out`` under its file lock. The
ranks talk over gloo (CPU, no NCCL needed) only to agree on the plan and the run-file name at
the start and to wait for each other at the end; rank 0 then prints the merged summary.
Without ``WORLD_SIZE`` in the environment none of this happens.
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SetupError, summarize

FINISH_TIMEOUT = datetime.timedelta(days=7)
"""How long ranks wait for each other: at the end, a peer may still have hours of sweep left."""


@dataclass(frozen=True)
class Rank:
    """This process's place among the ranks, from the variables torchrun sets."""
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_env(cls) -> Rank | None:
        """None when not started by torchrun (no ``WORLD_SIZE``)."""
        if "WORLD_SIZE" not in os.environ:
            return None
        try:
            world_size = int(os.environ["WORLD_SIZE"])
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
            local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
        except ValueError as exc:
            raise SetupError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables are not integers: {exc}") from None
        return cls(rank, world_size, local_rank, local_world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> str:
        """The device this rank generates on: ``cpu`` if asked for, else ``cuda:LOCAL_RANK``."""
        name = (requested or "cuda").strip().lower()
        if name in ("cpu", "cuda"):
            return "cpu" if name == "cpu" else f"cuda:{self.local_rank}"
        raise SetupError(f"--device {requested} under torchrun: each rank uses cuda:LOCAL_RANK; "
                         "leave --device out (or give cuda or cpu)")

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "local_world_size": self.local_world_size, "pid": os.getpid()}


def cpu_share(cpus: list[int], local_rank: int, local_world_size: int) -> list[int]:
    """``local_rank``'s disjoint, contiguous slice of ``cpus`` (a core each if there are too few)."""
    cpus = sorted(cpus)
    if len(cpus) < local_world_size:
        return [cpus[local_rank % len(cpus)]]
    per_rank = len(cpus) // local_world_size
    return cpus[local_rank * per_rank:(local_rank + 1) * per_rank]


def pin_cpus(rank: Rank) -> list[int]:
    """Pins this process to its share of the cores it may use now; returns them. Ranks on one
    host share its CPU, and eager generation is host-bound: a rank on its own cores is not
    slowed by its neighbours' Python threads."""
    cpus = cpu_share(list(os.sched_getaffinity(0)), rank.local_rank, rank.local_world_size)
    os.sched_setaffinity(0, cpus)
    return cpus


def init(rank: Rank) -> None:
    """Joins the gloo group torchrun's rendezvous set up (MASTER_ADDR, MASTER_PORT)."""
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world_size, timeout=FINISH_TIMEOUT)


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (pickled over gloo)."""
    import torch.distributed as dist
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wait_for_all() -> str | None:
    """Waits until every rank got here; returns None, or why some rank never will (it died)."""
    import torch.distributed as dist
    try:
        dist.barrier()
    except Exception as exc:  # noqa: BLE001 - gloo reports a dead peer as a plain RuntimeError
        return summarize(exc)
    return None


def finish() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


def run_file(prefix: Path, rank: int) -> Path:
    """Rank ``rank``'s run file: ``<prefix>-rank<N>.json``."""
    return prefix.with_name(f"{prefix.name}-rank{rank}.json")


def unfinished_ranks(prefix: Path, world_size: int) -> list[int]:
    """Ranks whose run file does not say the sweep finished (killed, or still running)."""
    unfinished = []
    for r in range(world_size):
        try:
            finished = "finished_utc" in json.loads(run_file(prefix, r).read_text())
        except (OSError, ValueError):
            finished = False
        if not finished:
            unfinished.append(r)
    return unfinished
