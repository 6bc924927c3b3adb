"""Autoscaling must never make a commit: leave out ``spec.replicas`` of HPA-scaled workloads.

The :class:`HpaIndex` knows which workloads HorizontalPodAutoscalers target. Offline, the
normalizer fills it from the HPAs in its input; the live pipeline feeds it from the HPA watch
and re-records a workload whose targeting changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from filters.base import Body, Skip, group_of


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    """A workload that an HPA scales."""

    namespace: str
    group: str
    kind: str
    name: str


class HpaIndex:
    """Which workloads are scaled by an HPA, keyed by each HPA; mutable, owned by one stage."""

    def __init__(self) -> None:
        self._by_hpa: dict[tuple[str, str], ScaleTarget] = {}
        self._targets: dict[ScaleTarget, int] = {}

    @staticmethod
    def is_hpa(body: Body) -> bool:
        return body.get("kind") == "HorizontalPodAutoscaler" and group_of(body) == "autoscaling"

    def observe(self, hpa: Body) -> tuple[ScaleTarget, ...]:
        """Record an HPA (added or modified); returns the targets whose state changed."""
        metadata = hpa.get("metadata") or {}
        namespace = metadata.get("namespace") or ""
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = ScaleTarget(
            namespace,
            (ref.get("apiVersion") or "").rpartition("/")[0],
            ref.get("kind") or "",
            ref.get("name") or "",
        )
        hpa_key = (namespace, metadata.get("name") or "")
        previous = self._by_hpa.get(hpa_key)
        if previous == target:
            return ()
        changed = self._release(hpa_key)
        self._by_hpa[hpa_key] = target
        self._targets[target] = self._targets.get(target, 0) + 1
        return (*changed, target) if self._targets[target] == 1 else changed

    def forget(self, hpa: Body) -> tuple[ScaleTarget, ...]:
        """Record that an HPA is gone; returns the targets no longer scaled."""
        metadata = hpa.get("metadata") or {}
        return self._release((metadata.get("namespace") or "", metadata.get("name") or ""))

    def _release(self, hpa_key: tuple[str, str]) -> tuple[ScaleTarget, ...]:
        target = self._by_hpa.pop(hpa_key, None)
        if target is None:
            return ()
        count = self._targets[target] - 1
        if count:
            self._targets[target] = count
            return ()
        del self._targets[target]
        return (target,)

    def __contains__(self, target: object) -> bool:
        return target in self._targets

    def __len__(self) -> int:
        return len(self._by_hpa)


class DropHpaReplicas:
    """Leave out ``spec.replicas`` of a workload that an HPA targets."""

    def __init__(self, index: HpaIndex) -> None:
        self._index = index

    def __call__(self, body: Body) -> Body | Skip:
        spec = body.get("spec")
        if not self._index or not isinstance(spec, dict) or "replicas" not in spec:
            return body
        metadata = body.get("metadata") or {}
        target = ScaleTarget(
            metadata.get("namespace") or "",
            group_of(body),
            body.get("kind") or "",
            metadata.get("name") or "",
        )
        if target in self._index:
            del spec["replicas"]
        return body
