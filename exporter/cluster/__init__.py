"""The cluster client: the only package that talks to the Kubernetes API.

:class:`Cluster` is the one door its callers use; behind it each concern has its module:
:mod:`~exporter.cluster.connection` (kubeconfig, authentication, one request, the only user of
kubernetes_asyncio, which :mod:`~exporter.cluster.k8slib` loads without its generated classes),
:mod:`~exporter.cluster.ratelimit` (every request passes a client-side token bucket, QPS and
burst like client-go's), :mod:`~exporter.cluster.discovery` (the served types),
:mod:`~exporter.cluster.listwatch` (list and watch), :mod:`~exporter.cluster.resource` (a
type's identity and paths) and :mod:`~exporter.cluster.errors` (the error hierarchy, all
:class:`ClusterError`). Nothing here may import the git store or the runner.
"""

from __future__ import annotations

from exporter.cluster.discovery import Discovering, Discovery
from exporter.cluster.errors import (
    ApiError,
    ClusterError,
    Conflict,
    Forbidden,
    Gone,
    InvalidResponse,
    KubeconfigError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unreachable,
    WatchListUnsupported,
)
from exporter.cluster.listwatch import INITIAL_EVENTS_END, ListWatch, Page, WatchEvent
from exporter.cluster.ratelimit import Clock, TokenBucket
from exporter.cluster.resource import ApiResource, Json

__all__ = [
    "INITIAL_EVENTS_END",
    "ApiError",
    "ApiResource",
    "Clock",
    "Cluster",
    "ClusterError",
    "Conflict",
    "Discovery",
    "Forbidden",
    "Gone",
    "InvalidResponse",
    "Json",
    "KubeconfigError",
    "NotFound",
    "Page",
    "TokenBucket",
    "TooManyRequests",
    "Unauthorized",
    "Unreachable",
    "WatchEvent",
    "WatchListUnsupported",
]


class Cluster(Discovering, ListWatch):
    """An authenticated connection to one API server; use as an async context manager."""
