"""The model-pair replicas behind one gateway: how many, started and retired while serving.

`--replicas N` runs N replicas; `auto` runs as many as the Ray cluster's GPUs hold for the placement (one GPU
per colocated replica, two per split one; one replica on CPU) and follows the cluster: when a KubeRay worker
group grows, the next check adds replicas for the new GPUs. The operator can change the count while serving
(AdminService.SetReplicas, `diffamp replicas N`): new replicas start beside the running ones; a removed
replica admits nothing more, lets its samples finish for the drain period, and hands the rest to the others,
where they continue from their tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from .config import AUTO_REPLICAS as AUTO
from .gateway import Gateway
from .replica import RayPlacement, RayReplica
from .workers import WorkerSpec

log = logging.getLogger(__name__)


class ReplicaManager:
    def __init__(self, gateway: Gateway, spec: WorkerSpec, where: RayPlacement, *, drain_s: float):
        self.gateway = gateway
        self.spec = spec
        self.where = where
        self.drain_s = drain_s
        self.target = 1
        self._names = (f"r{i}" for i in itertools.count())
        self._lock = asyncio.Lock()

    def auto_count(self) -> int:
        """Replicas the cluster's GPUs hold for the placement (1 on CPU)."""
        import ray

        if not self.spec.device.startswith("cuda"):
            return 1
        per_replica = 1 if self.where.placement == "colocated" else 2
        return max(1, int(ray.cluster_resources().get("GPU", 0)) // per_replica)

    async def scale_to(self, count: int) -> None:
        """Run `count` replicas (AUTO: auto_count()). Returns once added replicas serve and removed ones left."""
        async with self._lock:
            self.target = count
            want = count or self.auto_count()
            serving = [r for r in self.gateway.replicas if r not in self.gateway.scheduler.retiring]
            if len(serving) < want:
                new = [RayReplica(next(self._names), self.spec, self.where) for _ in range(want - len(serving))]
                log.info("starting replicas %s", ", ".join(r.id for r in new))
                await asyncio.gather(*(r.start() for r in new))
                for replica in new:
                    self.gateway.add_replica(replica)
            for replica_id in reversed(serving[want:]):
                log.info("retiring replica %s (drain period %.0f s)", replica_id, self.drain_s)
                await self.gateway.remove_replica(replica_id, self.drain_s)

    async def follow_cluster(self, every_s: float = 10.0) -> None:
        """With AUTO, add replicas when the cluster gains GPUs (e.g. a KubeRay worker group scaled up)."""
        while True:
            await asyncio.sleep(every_s)
            if self.target == AUTO:
                try:
                    await self.scale_to(AUTO)
                except Exception as exc:  # noqa: BLE001 - the next check tries again
                    log.error("could not follow the cluster's size: %s", exc)
