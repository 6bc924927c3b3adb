"""``kube2git restore``: apply a point of the backup to a cluster, in dependency order.

Every object in scope is compared with its live counterpart, both normalized by the same
policy: an equal object is left alone (so a second restore writes nothing), anything else is
server-side applied with the field manager ``kube2git-restore`` (``dryRun=All`` on request).
Stages run in order, objects within a stage concurrently under the client's rate limit:

CRDs (until served), Namespaces, cluster-scoped prerequisites (PriorityClasses, StorageClasses,
ClusterRoles, ...), LimitRanges and ResourceQuotas, ServiceAccounts, ConfigMaps, Secrets, RBAC
(Roles and bindings), PersistentVolumeClaims, Services, workloads and other namespaced types,
custom resources, objects with (non-controller) owners once their owners exist here (their
owner references are rebound to the owners' uids in this cluster), and last admission webhooks
and API services (which could otherwise reject the rest while their backends are not there
yet).

Not restored, and reported by name: Secrets whose values the backup does not hold (redacted
or fingerprinted; the :data:`SecretPreparer` seam is where encrypted values will be decrypted),
ConfigMaps whose ``binaryData`` was kept as fingerprints, objects whose API is not served,
Nodes (a kubelet registers its own node; a restored one would be a ghost) and the objects
each API server writes for itself (its client CAs, the ``kubernetes`` Service's port). The
``rules`` of an aggregated ClusterRole are left to the target's aggregation controller.

Nothing is deleted unless pruning is asked for: then the objects of the scope that a snapshot
would record and that are absent at the point are deleted, last stage first.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from exporter.cluster import (
    ApiError,
    ApiResource,
    Cluster,
    Conflict,
    Json,
    TooManyRequests,
    Unreachable,
)
from exporter.config import Settings
from exporter.diff import ObjectDiff, diff_live
from exporter.gitstore import BranchReader, TreeAt
from exporter.gitstore.message import load_yaml
from exporter.layout import ObjectKey, split_api_version
from exporter.retry import RetryPolicy
from exporter.scope import Scope
from exporter.serializer import dump_bytes
from exporter.sops.sealer import open_secret
from exporter.sync import Normalizer
from filters import HpaIndex, Pipeline, Skip
from filters.policy import SecretMode
from filters.secrets import REDACTED_ANNOTATION

log = structlog.get_logger()

FIELD_MANAGER = "kube2git-restore"
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Waits between attempts of a request that failed transiently (unreachable, 5xx, 429 waits
for the server's Retry-After instead)."""
_RETRY = RetryPolicy(backoff=RETRY_DELAYS)
"""Clamps a 429's Retry-After (a missing or absurd one waits the first backoff step)."""
CRD_WAIT = 60.0
"""Seconds to wait for restored CRDs to be established and served."""

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class Stage(enum.IntEnum):
    """Restore order; objects of one stage are applied concurrently."""

    CRDS = 0
    NAMESPACES = 1
    CLUSTER_PREREQUISITES = 2
    NAMESPACE_POLICY = 3
    SERVICE_ACCOUNTS = 4
    CONFIG_MAPS = 5
    SECRETS = 6
    RBAC = 7
    STORAGE = 8
    SERVICES = 9
    WORKLOADS = 10
    CUSTOM_RESOURCES = 11
    OWNED = 12
    ADMISSION = 13

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


_RBAC = "rbac.authorization.k8s.io"
_STAGE_OF_TYPE: dict[tuple[str, str], Stage] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): Stage.CRDS,
    ("", "namespaces"): Stage.NAMESPACES,
    ("", "limitranges"): Stage.NAMESPACE_POLICY,
    ("", "resourcequotas"): Stage.NAMESPACE_POLICY,
    ("", "serviceaccounts"): Stage.SERVICE_ACCOUNTS,
    ("", "configmaps"): Stage.CONFIG_MAPS,
    ("", "secrets"): Stage.SECRETS,
    (_RBAC, "roles"): Stage.RBAC,
    (_RBAC, "rolebindings"): Stage.RBAC,
    (_RBAC, "clusterrolebindings"): Stage.RBAC,
    ("", "persistentvolumeclaims"): Stage.STORAGE,
    ("", "services"): Stage.SERVICES,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): Stage.ADMISSION,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): Stage.ADMISSION,
    ("apiregistration.k8s.io", "apiservices"): Stage.ADMISSION,
}
NOT_RESTORED_TYPES: dict[tuple[str, str], str] = {
    ("", "nodes"): "a Node is registered by its kubelet",
}
"""Types never applied nor pruned, with the reason reported for each object."""
_OWN_WRITING = "written by each API server for itself"
NOT_RESTORED_OBJECTS: dict[ObjectKey, str] = {
    ObjectKey("", "configmaps", "kube-system", "extension-apiserver-authentication"): _OWN_WRITING,
    ObjectKey(
        "", "configmaps", "kube-system", "kube-apiserver-legacy-service-account-token-tracking"
    ): _OWN_WRITING,
    ObjectKey("", "services", "default", "kubernetes"): _OWN_WRITING,
}
"""Objects never applied nor pruned: each cluster's control plane writes its own."""


def stage_of(key: ObjectKey, custom_types: frozenset[tuple[str, str]]) -> Stage:
    """The stage an object is applied in; ``custom_types`` are (group, plural) of CRDs."""
    known = _STAGE_OF_TYPE.get((key.group, key.resource))
    if known is not None:
        return known
    if (key.group, key.resource) in custom_types:
        return Stage.CUSTOM_RESOURCES
    return Stage.CLUSTER_PREREQUISITES if key.namespace is None else Stage.WORKLOADS


class Outcome(enum.Enum):
    CREATED = "created"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """What happened to one object of the backup."""

    key: ObjectKey
    outcome: Outcome
    reason: str = ""
    """Why it was skipped or failed."""
    diff: ObjectDiff | None = None
    """For created and changed objects: the live object before and after (normalized)."""


@dataclass(slots=True)
class RestoreReport:
    """Every object's outcome, and what pruning deleted."""

    point: str
    dry_run: bool
    results: list[ObjectResult] = field(default_factory=list)
    pruned: list[ObjectKey] = field(default_factory=list)
    prune_failed: dict[ObjectKey, str] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(o)} {o.value}" for o in Outcome)
        pruned = f", {len(self.pruned)} pruned" if self.pruned else ""
        failed = f", {len(self.prune_failed)} not pruned" if self.prune_failed else ""
        mode = " (dry run: nothing was written)" if self.dry_run else ""
        return f"restore of {self.point}: {counts}{pruned}{failed}{mode}"

    @property
    def failed(self) -> bool:
        return self.count(Outcome.FAILED) > 0 or bool(self.prune_failed)


SecretPreparer = Callable[[Json], Json | str]
"""Turns a Secret from the backup into the Secret to apply, or says why it cannot be restored.
This is the seam where values kept encrypted in the backup are decrypted before the apply."""


def values_not_in_backup(secret: Json) -> Json | str:
    """The default: a Secret whose values were redacted or fingerprinted cannot be restored."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(REDACTED_ANNOTATION)
    has_values = any(secret.get(f) for f in ("data", "stringData"))
    if has_values and mode in ("redact", "fingerprint"):
        kept = "redacted" if mode == "redact" else "kept as fingerprints"
        return f"Secret values were {kept} in the backup"
    return secret


def secret_preparer(identities: Sequence[Any]) -> SecretPreparer:
    """Decrypt Secrets kept in ``sops`` mode with ``identities``; others as
    :func:`values_not_in_backup` says."""

    def prepare(secret: Json) -> Json | str:
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if annotations.get(REDACTED_ANNOTATION) == SecretMode.SOPS.value:
            return open_secret(secret, identities)
        return values_not_in_backup(secret)

    return prepare


Progress = Callable[[Stage, int, int], None]
"""Called as objects of a stage finish: the stage, objects done, objects in the stage."""


@dataclass(frozen=True, slots=True)
class _Item:
    key: ObjectKey
    body: Json
    content: bytes


class Restorer:
    """Applies one point of the backup (within a scope) to one cluster."""

    def __init__(
        self,
        cluster: Cluster,
        reader: BranchReader,
        point: TreeAt,
        *,
        settings: Settings,
        pipeline: Pipeline,
        hpa_index: HpaIndex,
        scope: Scope,
        dry_run: bool = False,
        force_conflicts: bool = False,
        prepare_secret: SecretPreparer = values_not_in_backup,
        progress: Progress | None = None,
        sleep: Sleep = asyncio.sleep,
        concurrency: int = 8,
    ) -> None:
        self._cluster = cluster
        self._reader = reader
        self._point = point
        self._settings = settings
        self._pipeline = pipeline
        self._hpa_index = hpa_index
        self._normalize = Normalizer(pipeline=pipeline, hpa_index=hpa_index)
        self._scope = scope
        self._dry_run = dry_run
        self._force = force_conflicts
        self._prepare_secret = prepare_secret
        self._progress = progress
        self._sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)
        self._served: dict[tuple[str, str], ApiResource] = {}
        self._by_kind: dict[tuple[str, str], ApiResource] = {}

    # -- plan ---------------------------------------------------------------------------------

    def _items(self) -> list[_Item]:
        """The objects of the point in scope, parsed; HPAs are indexed for the replica rule."""
        items: list[_Item] = []
        for path, blob in sorted(self._point.files.items()):
            try:
                key = ObjectKey.from_path(path)
            except ValueError:
                continue  # not one of ours (a README someone added)
            if not self._scope.selects(key):
                continue
            content = self._reader.read(blob)
            body = load_yaml(content)
            if not isinstance(body, dict):
                continue
            if HpaIndex.is_hpa(body):
                self._hpa_index.observe(body)
            items.append(_Item(key, body, content))
        return items

    def _not_restorable(self, item: _Item) -> str | _Item:
        reason = NOT_RESTORED_TYPES.get((item.key.group, item.key.resource))
        reason = reason or NOT_RESTORED_OBJECTS.get(item.key)
        if reason:
            return reason
        kind = (item.body.get("kind"), item.body.get("apiVersion"))
        if kind == ("Secret", "v1"):
            prepared = self._prepare_secret(item.body)
            return (
                prepared if isinstance(prepared, str) else _Item(item.key, prepared, item.content)
            )
        if (
            kind == ("ConfigMap", "v1")
            and item.body.get("binaryData")
            and self._settings.filters.secrets.configmap_binary_fingerprints
        ):
            return "binaryData was kept as fingerprints in the backup"
        return item

    async def _discover(self) -> None:
        discovery = await self._with_retries(self._cluster.discover)
        self._served = {(r.group, r.resource): r for r in discovery.resources}
        self._by_kind = {(r.group, r.kind): r for r in discovery.resources}

    # -- run ----------------------------------------------------------------------------------

    async def run(self) -> RestoreReport:
        """Apply every object in scope, stage by stage."""
        report = RestoreReport(self._point.label, self._dry_run)
        items = self._items()
        custom = frozenset(
            (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
            for item in items
            if item.key.resource == "customresourcedefinitions"
            for spec in [item.body.get("spec") or {}]
        )
        stages: dict[Stage, list[_Item]] = defaultdict(list)
        for item in items:
            checked = self._not_restorable(item)
            if isinstance(checked, str):
                report.results.append(ObjectResult(item.key, Outcome.SKIPPED, checked))
            elif (checked.body.get("metadata") or {}).get("ownerReferences"):
                stages[Stage.OWNED].append(checked)
            else:
                stages[stage_of(item.key, custom)].append(checked)
        await self._discover()
        for stage in sorted(stages):
            results = await self._stage(stage, stages[stage])
            report.results += results
            if stage is Stage.CRDS and results:
                await self._wait_served(custom)
        return report

    async def _stage(self, stage: Stage, items: Sequence[_Item]) -> list[ObjectResult]:
        done = 0
        results: list[ObjectResult] = []

        async def one(item: _Item) -> None:
            nonlocal done
            async with self._slots:
                results.append(await self._restore(item))
            done += 1
            if self._progress is not None:
                self._progress(stage, done, len(items))

        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
        return sorted(results, key=lambda r: r.key)

    async def _wait_served(self, custom: Iterable[tuple[str, str]]) -> None:
        """Until every restored CRD's resource is served (its CRD is Established)."""
        wanted = set(custom)
        waited = 0.0
        while True:
            await self._discover()
            if wanted <= self._served.keys() or self._dry_run or waited >= CRD_WAIT:
                return
            await self._sleep(0.5)
            waited += 0.5

    async def _restore(self, item: _Item) -> ObjectResult:
        key = item.key
        resource = self._served.get((key.group, key.resource))
        api_version = str(item.body.get("apiVersion", ""))
        if resource is None:
            return ObjectResult(key, Outcome.SKIPPED, f"API not served: {api_version}")
        path = resource.object_path(
            key.namespace, key.name, version=split_api_version(api_version)[1]
        )
        try:
            wanted = await self._with_owners_of_this_cluster(item.body, key.namespace)
            body = _without_controller_fields(wanted)
            current = await self._with_retries(lambda: self._cluster.get_object(path))
            before = self._normalized(resource, current)
            # The backup's own file, unless owner references were rebound: a sops Secret's
            # body here is decrypted, its file (what the live object normalizes to) is not.
            expected = item.content if wanted is item.body else dump_bytes(wanted)
            if before is not None and _comparable(before) == _comparable(expected):
                # Equal but for owner uids and what the target fills in itself.
                return ObjectResult(key, Outcome.UNCHANGED)
            applied = await self._with_retries(
                lambda: self._cluster.apply(
                    path,
                    body,
                    field_manager=FIELD_MANAGER,
                    force=self._force,
                    dry_run=self._dry_run,
                )
            )
        except Conflict as error:
            return ObjectResult(key, Outcome.FAILED, f"conflict: {error}")
        except ApiError as error:
            return ObjectResult(key, Outcome.FAILED, str(error))
        except Unreachable as error:
            return ObjectResult(key, Outcome.FAILED, str(error))
        after = self._normalized(resource, applied) or item.content
        outcome = Outcome.CREATED if current is None else Outcome.CHANGED
        diff = ObjectDiff(key.path, "added" if current is None else "changed", before or b"", after)
        log.debug("restore.applied", object=key.path, outcome=outcome.value)
        return ObjectResult(key, outcome, diff=diff)

    def _normalized(self, resource: ApiResource, obj: Json | None) -> bytes | None:
        if obj is None:
            return None
        result = self._normalize(resource, obj)
        return None if isinstance(result, Skip) else result.content

    async def _with_owners_of_this_cluster(self, body: Json, namespace: str | None) -> Json:
        """Owner references point at uids of the cluster the backup came from: rebind them to
        the owners of the same name here, and drop those whose owner does not exist (the
        garbage collector would delete an object whose owners are all missing)."""
        metadata = body.get("metadata") or {}
        owners = metadata.get("ownerReferences")
        if not owners:
            return body
        rebound: list[Json] = []
        for owner in owners:
            group, _ = split_api_version(str(owner.get("apiVersion", "")))
            resource = self._by_kind.get((group, str(owner.get("kind", ""))))
            if resource is None:
                continue
            path = resource.object_path(namespace, str(owner.get("name", "")))
            live = await self._with_retries(functools.partial(self._cluster.get_object, path))
            if live is not None:
                rebound.append({**owner, "uid": (live.get("metadata") or {}).get("uid")})
        new_metadata = {k: v for k, v in metadata.items() if k != "ownerReferences"}
        if rebound:
            new_metadata["ownerReferences"] = rebound
        return {**body, "metadata": new_metadata}

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call``, again after transient failures (unreachable, 5xx, 429), then raise."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return await call()
            except TooManyRequests as error:
                if delay is None:
                    raise
                await self._sleep(_RETRY.retry_after(error.retry_after, 1))
            except Unreachable:
                if delay is None:
                    raise
                await self._sleep(delay)
            except ApiError as error:
                if error.status < 500 or delay is None:
                    raise
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- prune --------------------------------------------------------------------------------

    async def prune_candidates(self) -> list[ObjectKey]:
        """Live objects in scope that a snapshot would record and that the point lacks."""
        result = await diff_live(
            self._cluster,
            self._reader,
            self._point,
            settings=self._settings,
            pipeline=self._pipeline,
            hpa_index=self._hpa_index,
            scope=self._scope,
        )
        if result.unread:
            names = ", ".join(sorted(result.unread))
            raise PruneRefused(f"cannot prune: some types could not be read ({names})")
        return [
            key
            for diff in result.objects
            if diff.status == "added"
            for key in [ObjectKey.from_path(diff.path)]
            if (key.group, key.resource) not in NOT_RESTORED_TYPES
            and key not in NOT_RESTORED_OBJECTS
        ]

    async def prune(self, keys: Sequence[ObjectKey], report: RestoreReport) -> None:
        """Delete ``keys``, the last stage first (webhooks before what they guard)."""
        if not self._served:
            await self._discover()
        by_stage: dict[Stage, list[ObjectKey]] = defaultdict(list)
        for key in keys:
            by_stage[stage_of(key, frozenset())].append(key)
        for stage in sorted(by_stage, reverse=True):

            async def delete(key: ObjectKey) -> None:
                resource = self._served.get((key.group, key.resource))
                if resource is None:
                    report.prune_failed[key] = "API not served"
                    return
                path = resource.object_path(key.namespace, key.name)
                try:
                    async with self._slots:
                        await self._with_retries(
                            lambda: self._cluster.delete(path, dry_run=self._dry_run)
                        )
                except (ApiError, Unreachable) as error:
                    report.prune_failed[key] = str(error)
                    return
                report.pruned.append(key)

            async with asyncio.TaskGroup() as group:
                for key in by_stage[stage]:
                    group.create_task(delete(key))
        report.pruned.sort()


def _comparable(content: bytes) -> bytes:
    """A normalized file without the fields the target cluster fills in itself."""
    body = load_yaml(content)
    return dump_bytes(_without_controller_fields(body)) if isinstance(body, dict) else content


_JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")


def _without_controller_fields(body: Json) -> Json:
    """Leave out fields the target cluster fills in itself: the ``rules`` of an aggregated
    ClusterRole (applying them would conflict with the aggregation controller), and a Job's
    generated selector, which names the uid of the Job in the backup's cluster (the API
    server refuses it on a new Job and generates its own)."""
    if body.get("kind") == "ClusterRole" and body.get("aggregationRule"):
        return {k: v for k, v in body.items() if k != "rules"}
    spec = body.get("spec") or {}
    if body.get("kind") == "Job" and spec.get("selector") and not spec.get("manualSelector"):
        template = spec.get("template") or {}
        metadata = template.get("metadata") or {}
        labels = {
            k: v for k, v in (metadata.get("labels") or {}).items() if k not in _JOB_UID_LABELS
        }
        template = {**template, "metadata": {**metadata, "labels": labels}}
        spec = {k: v for k, v in spec.items() if k != "selector"} | {"template": template}
        return {**body, "spec": spec}
    return body


class PruneRefused(Exception):
    """Pruning would act on an incomplete view of the cluster."""


def describe(result: ObjectResult) -> str:
    """One line per object for the command's output."""
    if result.outcome in (Outcome.SKIPPED, Outcome.FAILED):
        return f"{result.outcome.value} {result.key.path}: {result.reason}"
    fields = result.diff.fields() if result.diff and result.outcome is Outcome.CHANGED else []
    return f"{result.outcome.value} {result.key.path}" + (
        f" ({', '.join(fields)})" if fields else ""
    )
