"""Errors of the cluster client, and how their messages are written.

::

    ClusterError                 talking to the Kubernetes API failed
    ├── KubeconfigError          no usable kubeconfig or context (a user error)
    ├── Unreachable              the API server cannot be reached or timed out
    ├── WatchListUnsupported     the server streamed no WatchList: use a paginated LIST
    ├── InvalidResponse          a 2xx answer that is not the JSON document asked for (an
    │                            aggregated API answering discovery with an HTML page, a
    │                            list without its keys)
    └── ApiError                 any other failed response
        ├── Unauthorized         401: expired or wrong credentials
        ├── Forbidden            403
        ├── NotFound             404
        ├── Conflict             409: someone else wrote first
        ├── Gone                 410: the resourceVersion is too old: relist
        └── TooManyRequests      429, with the server's ``Retry-After``

Owns the error types and the status each maps from; it must never put a credential or a
whole response body in a message (:func:`preview` keeps the start of one, on one line).
"""

from __future__ import annotations

from collections.abc import Mapping


class ClusterError(Exception):
    """Talking to the Kubernetes API failed."""


class KubeconfigError(ClusterError):
    """The kubeconfig, its context or the in-cluster configuration is missing or invalid."""


class Unreachable(ClusterError):
    """The API server did not answer (connection refused, DNS, TLS, timeout)."""


class ApiError(ClusterError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: HTTP {status}: {message}" if path else message)
        self.status = status
        self.path = path


class Unauthorized(ApiError):
    """401: the credentials are wrong or expired."""


class Forbidden(ApiError):
    """403: RBAC denies the request."""


class NotFound(ApiError):
    """404: no such object (or type)."""


class Conflict(ApiError):
    """409: the object exists already, or changed since it was read."""


class Gone(ApiError):
    """410: the requested resourceVersion is no longer in the server's history."""


class WatchListUnsupported(ClusterError):
    """The server streamed no WatchList: use a paginated LIST."""


class InvalidResponse(ClusterError):
    """The server answered 2xx with something that is not the JSON document expected."""


class TooManyRequests(ApiError):
    """429: the server (API Priority and Fairness) asks the client to come back later."""

    def __init__(
        self, status: int, message: str, *, path: str = "", retry_after: float | None
    ) -> None:
        super().__init__(status, message, path=path)
        self.retry_after = retry_after
        """``Retry-After`` in seconds as sent (``None``: absent or unreadable); callers clamp
        it through :class:`exporter.retry.RetryPolicy`."""


STATUS_ERRORS: Mapping[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
}
"""The error an HTTP status (of a response or a watch's ERROR event) maps to; else ApiError."""


def preview(raw: bytes) -> str:
    """The start of an unexpected answer, on one line, for the error message."""
    return " ".join(raw[:120].decode("utf-8", "replace").split()) or "(empty)"


def one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())
