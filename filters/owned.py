"""Skip the children that controllers re-create (ReplicaSets, their Pods, Jobs of CronJobs,
EndpointSlices, a custom controller's runners): a restore would create duplicates."""

from __future__ import annotations

from collections.abc import Iterable

from filters.base import Body, Skip, TypeSet


class SkipControlled:
    """Skip objects with an ``ownerReference`` whose ``controller`` is true."""

    def __init__(self, keep_types: Iterable[str] = ()) -> None:
        self._keep = TypeSet(keep_types)
        self._skip = Skip("controlled by another object")

    def __call__(self, body: Body) -> Body | Skip:
        owners = (body.get("metadata") or {}).get("ownerReferences")
        if owners and any(isinstance(o, dict) and o.get("controller") is True for o in owners):
            if self._keep and self._keep(body):
                return body
            return self._skip
        return body
