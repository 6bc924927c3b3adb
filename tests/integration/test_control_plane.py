"""The local control plane behaves like a real cluster where kube2git's design depends on it.

Each test proves one behaviour the exporter relies on (controllers, simulated pods, 410 after
restart and compaction, RBAC 403, APF 429) with kubernetes_asyncio, the client the product uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.cluster.control_plane import KWOK_NODE_ANNOTATION, ControlPlane

pytestmark = pytest.mark.cluster


@contextlib.asynccontextmanager
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A client of its own per use, so no pooled connection outlives an API server restart."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api:
        yield api


async def eventually(
    what: str, probe: Callable[[], Awaitable[bool]], *, within: float = 90.0
) -> None:
    """Poll the real cluster until ``probe`` holds, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await probe():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


def _meta(name: str, labels: dict[str, str] | None = None) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, labels=labels)


def _deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=_meta(name, labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"type": "kwok"},
                    containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")],
                ),
            ),
        ),
    )


async def test_deployment_gets_replicaset_and_pods_run_on_kwok_node(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Controllers create the ReplicaSet, the scheduler binds pods to kwok nodes, kwok runs them."""
    await asyncio.to_thread(control_plane.create_kwok_nodes, 2)
    async with api_client(control_plane.kubeconfig) as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        # The cluster is shared, so the pods may land on kwok nodes of earlier tests too.
        kwok_nodes = {
            node.metadata.name
            for node in (await core.list_node()).items
            if (node.metadata.annotations or {}).get(KWOK_NODE_ANNOTATION) == "fake"
        }
        deployment = await apps.create_namespaced_deployment(namespace, _deployment("web", 3))

        async def replicaset_owned() -> bool:
            sets = (await apps.list_namespaced_replica_set(namespace)).items
            return any(
                ref.uid == deployment.metadata.uid and ref.controller
                for rs in sets
                for ref in rs.metadata.owner_references or []
            )

        await eventually("a ReplicaSet controlled by the Deployment", replicaset_owned)

        async def pods_running() -> bool:
            pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
            return len(pods) == 3 and all(
                pod.spec.node_name in kwok_nodes
                and pod.status.phase == "Running"
                and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
                for pod in pods
            )

        await eventually("3 Running, Ready pods on kwok nodes", pods_running)

        async def deployment_available() -> bool:
            status = (
                await apps.read_namespaced_deployment(deployment.metadata.name, namespace)
            ).status
            return status.ready_replicas == 3 and status.available_replicas == 3

        await eventually("the Deployment to report 3 available replicas", deployment_available)


async def test_watch_resumed_after_restart_and_compaction_gets_410(
    control_plane: ControlPlane, namespace: str
) -> None:
    """A restart ends open watches; resuming from an old resourceVersion after compaction is
    410 Gone, which is what forces kube2git to relist."""
    async with api_client(control_plane.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=_meta("first"))
        )
        old_version = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
        for index in range(3):
            await core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=_meta(f"c{index}"))
            )

        seen: list[str] = []

        async def consume() -> None:
            async for event in watch.Watch().stream(
                core.list_namespaced_config_map,
                namespace,
                resource_version=old_version,
                timeout_seconds=600,
            ):
                seen.append(event["raw_object"]["metadata"]["name"])  # noqa: PERF401 -- read live

        watcher = asyncio.create_task(consume())
        try:

            async def replayed() -> bool:
                return {"c0", "c1", "c2"} <= set(seen)

            # Before the restart, resuming from the old version replays what happened since.
            await eventually("the watch to replay newer events", replayed, within=30)
            await asyncio.to_thread(control_plane.restart_apiserver)
            done, _ = await asyncio.wait({watcher}, timeout=60)
            assert watcher in done, "the restart did not end the open watch"
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
            if not watcher.cancelled():
                watcher.exception()  # it may end in a connection error: that is the point

    revision = await asyncio.to_thread(control_plane.compact_etcd)
    assert revision > int(old_version)

    async with api_client(control_plane.kubeconfig) as api:
        core = client.CoreV1Api(api)
        statuses: list[int] = []

        async def resume_is_gone() -> bool:
            try:
                async for _ in watch.Watch().stream(
                    core.list_namespaced_config_map,
                    namespace,
                    resource_version=old_version,
                    timeout_seconds=5,
                ):
                    statuses.append(200)
                    return False
            except ApiException as exc:
                statuses.append(exc.status)
                # 429 only while the restarted server's watch cache (re)initialises.
                if exc.status != 429:
                    return True
            return False

        await eventually("the resumed watch to fail", resume_is_gone, within=60)
        assert statuses[-1] == 410, statuses


async def test_restricted_identity_gets_403_where_rbac_denies(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The second identity holds exactly what a Role grants it, and no more."""
    user = control_plane.restricted_user
    async with api_client(control_plane.kubeconfig) as admin:
        rbac = client.RbacAuthorizationV1Api(admin)
        role = client.V1Role(
            metadata=_meta("read-configmaps"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                )
            ],
        )
        await rbac.create_namespaced_role(namespace, role)
        binding = client.V1RoleBinding(
            metadata=_meta("read-configmaps"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[
                client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name=user)
            ],
        )
        await rbac.create_namespaced_role_binding(namespace, binding)

    async with api_client(control_plane.restricted_kubeconfig) as restricted:
        core = client.CoreV1Api(restricted)

        async def granted() -> bool:
            try:
                await core.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False
            return True

        await eventually("RBAC to grant the Role", granted, within=30)
        for call in (
            lambda: core.list_namespaced_secret(namespace),
            lambda: core.list_namespaced_config_map("default"),
            lambda: core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=_meta("x"))
            ),
            core.list_namespace,
        ):
            with pytest.raises(ApiException) as denied:
                await call()
            assert denied.value.status == 403


async def test_restricted_identity_gets_429_under_apf_reject(
    control_plane: ControlPlane, namespace: str
) -> None:
    """API Priority and Fairness rejects the identity with 429 and Retry-After, then recovers."""
    async with api_client(control_plane.restricted_kubeconfig) as restricted:
        core = client.CoreV1Api(restricted)
        with control_plane.apf_reject(control_plane.restricted_user):
            with pytest.raises(ApiException) as throttled:
                await core.list_namespaced_config_map(namespace)
            assert throttled.value.status == 429
            headers = throttled.value.headers
            assert headers is not None
            assert int(headers["Retry-After"]) >= 1
        # Outside the context APF admits the identity again; RBAC then has its say.
        with pytest.raises(ApiException) as denied:
            await core.list_namespaced_config_map(namespace)
        assert denied.value.status == 403
