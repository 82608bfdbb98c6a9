"""A model-pair replica as the gateway sees it: one colocated actor or one split pair, with its own KV cache.

`Replica` is the small interface the gateway drives (execute one BatchPlan, report info, recover, shut down).
`RayReplica` implements it with the Ray actors of workers.py, in a placement group of its own: a split pair's
two bundles are packed onto as few nodes as its resources allow (its logits travel between them every step),
while separate replicas land wherever the cluster has room.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Protocol

from .engine.model import RunnerInfo
from .plan import BatchPlan, BatchResult
from .workers import AfterWorker, BeforeWorker, PairWorker, WorkerSpec, actor_options


class WorkerLost(Exception):
    """A worker of the replica died or became unreachable during a call (killed, out of memory, its node lost),
    as opposed to its step raising: the call may not have run at all."""


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
        """Run one worker call; raises when the replica failed (its KV cache is then lost): WorkerLost when a
        worker died or became unreachable, else the step's own error."""

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
        self.group = None

    def _bundles(self) -> list[dict]:
        where = self.where
        resources = [where.after_resources] if where.placement == "colocated" else \
            [where.after_resources, where.before_resources]
        gpu = {"GPU": 1} if self.spec.device.startswith("cuda") else {}
        return [{"CPU": where.worker_cpus, **gpu, **(r or {})} for r in resources]

    async def start(self) -> None:
        """Reserve the replica's placement group (waiting while the cluster has no room, e.g. for an autoscaler
        to add a node), then start its actors and wait until they answer."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if self.group is None:
            self.group = placement_group(self._bundles(), strategy="PACK",
                                         name=f"diffamp-{self.id}-{uuid.uuid4().hex[:8]}")
            try:
                await self.group.ready()
            except BaseException:  # cancelled while the cluster had no room: give the reservation back
                self.shutdown()
                raise

        def options(bundle: int, max_restarts: int) -> dict:
            base = actor_options(self.spec.device, self.where.worker_cpus, None, max_restarts)
            base.pop("resources", None)
            return base | {"scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=self.group, placement_group_bundle_index=bundle)}

        if self.where.placement == "colocated":
            self.actors = [ray.remote(PairWorker).options(**options(0, max_restarts=-1)).remote(self.spec)]
        else:
            # A restarted split actor could not rejoin its peer's process group, so recover() rebuilds both.
            self.actors = [ray.remote(AfterWorker).options(**options(0, max_restarts=0)).remote(self.spec),
                           ray.remote(BeforeWorker).options(**options(1, max_restarts=0)).remote(self.spec)]
            master = await self.actors[0].address.remote()
            await asyncio.gather(*(a.join_group.remote(master, self.where.group_timeout_s) for a in self.actors))
        await asyncio.gather(*(a.ping.remote() for a in self.actors))

    async def execute(self, plan: BatchPlan) -> BatchResult:
        from ray.exceptions import RayActorError

        try:
            results = await asyncio.gather(*(a.execute.remote(plan) for a in self.actors))
        except RayActorError as exc:
            raise WorkerLost(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
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
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self.group is not None:
            remove_placement_group(self.group)
            self.group = None
