"""A model-pair replica as the gateway sees it: one colocated actor or one split pair, with its own KV cache.

`Replica` is the small interface the gateway drives (execute one BatchPlan, report info, recover, shut down).
`RayReplica` implements it with the Ray actors of workers.py; an in-process engine can implement it too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from .engine.model import RunnerInfo
from .plan import BatchPlan, BatchResult
from .workers import AfterWorker, BeforeWorker, PairWorker, WorkerSpec, actor_options


@dataclass(frozen=True, kw_only=True)
class ReplicaInfo:
    id: str
    placement: str
    slots: int
    after: RunnerInfo
    after_node: str
    before: RunnerInfo
    before_node: str


class Replica(Protocol):
    id: str
    slots: int

    async def execute(self, plan: BatchPlan) -> BatchResult:
        """Run one worker call; raises when the replica failed (its KV cache is then lost)."""

    async def info(self) -> ReplicaInfo: ...

    async def recover(self) -> None:
        """Return once the replica can execute again, with an empty KV cache."""

    def shutdown(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class RayPlacement:
    """Where a replica's actors go."""

    placement: str
    worker_cpus: float
    after_resources: dict | None = None
    before_resources: dict | None = None
    group_timeout_s: float = 120.0


class RayReplica:
    def __init__(self, replica_id: str, spec: WorkerSpec, where: RayPlacement):
        self.id = replica_id
        self.spec = spec
        self.where = where
        self.slots = spec.max_batch_size
        self.actors: list = []

    async def start(self) -> None:
        import ray

        spec, where = self.spec, self.where
        if where.placement == "colocated":
            cls = ray.remote(PairWorker).options(**actor_options(spec.device, where.worker_cpus,
                                                                 where.after_resources, max_restarts=-1))
            self.actors = [cls.remote(spec)]
        else:
            # A restarted split actor could not rejoin its peer's process group, so recover() rebuilds both.
            after = ray.remote(AfterWorker).options(
                **actor_options(spec.device, where.worker_cpus, where.after_resources, max_restarts=0))
            before = ray.remote(BeforeWorker).options(
                **actor_options(spec.device, where.worker_cpus, where.before_resources, max_restarts=0))
            self.actors = [after.remote(spec), before.remote(spec)]
            master = await self.actors[0].address.remote()
            await asyncio.gather(*(a.join_group.remote(master, where.group_timeout_s) for a in self.actors))
        await asyncio.gather(*(a.ping.remote() for a in self.actors))

    async def execute(self, plan: BatchPlan) -> BatchResult:
        results = await asyncio.gather(*(a.execute.remote(plan) for a in self.actors))
        return results[0]

    async def info(self) -> ReplicaInfo:
        if self.where.placement == "colocated":
            (after, before), node = await asyncio.gather(self.actors[0].info.remote(), self.actors[0].ping.remote())
            after_node = before_node = node
        else:
            after, before, after_node, before_node = await asyncio.gather(
                *(a.info.remote() for a in self.actors), *(a.ping.remote() for a in self.actors))
        return ReplicaInfo(id=self.id, placement=self.where.placement, slots=self.slots, after=after,
                           after_node=after_node, before=before, before_node=before_node)

    async def recover(self) -> None:
        """Ray restarts a crashed colocated actor (wait for it to answer); a split pair is rebuilt."""
        import ray

        if self.where.placement == "colocated":
            await self.actors[0].ping.remote()
            return
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        await self.start()

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
