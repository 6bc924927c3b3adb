"""Errors of the git store; messages never hold a credential (URLs are scrubbed).

::

    GitStoreError                  anything the git store cannot do
    ├── RepositoryLocked           another process writes to the same repository
    ├── NotLeading                 the fence says this replica may no longer write
    ├── CredentialsUnavailable     a configured key/token/password file or variable is missing
    │   └── InsecureTransport      credentials would travel over plain http://
    ├── PointNotFound              a repository, ref or time names nothing in the history
    └── RemoteError                talking to the remote failed
        ├── RemoteUnreachable      connection refused, DNS, TLS, server error: retried
        │   └── RemoteTimeout      the operation exceeded its timeout: retried
        ├── AuthenticationFailed   the remote refused our credentials: not retried
        ├── HostKeyUnknown         the SSH host key is not in known_hosts (or changed): not retried
        └── PushRejected           the remote refused the update even after fetch and replay

    SigningKeyError (ValueError)   git.signing.key_file cannot be used: a user error (exit 2)
"""

from __future__ import annotations


class GitStoreError(Exception):
    """Base of every error the git store raises."""


class SigningKeyError(ValueError):
    """The signing key file is missing, unreadable, encrypted or not an ed25519 key."""


class RepositoryLocked(GitStoreError):
    """Another live process holds the repository's writer lock."""


class NotLeading(GitStoreError):
    """The store's fence refused a commit or push: this replica's leadership is not current."""


class CredentialsUnavailable(GitStoreError):
    """A configured credential source (file or environment variable) cannot be read."""


class InsecureTransport(CredentialsUnavailable):
    """Credentials would be sent over plain ``http://`` without ``allow_insecure_http``."""


class PointNotFound(GitStoreError):
    """The repository, ref or time names nothing in the backup's history (a user error)."""


class RemoteError(GitStoreError):
    """A fetch or push failed; ``detail`` is the scrubbed output of git."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}: {self.detail}" if self.detail else base


class RemoteUnreachable(RemoteError):
    """The remote could not be reached or failed on its side; worth retrying."""


class RemoteTimeout(RemoteUnreachable):
    """The operation did not finish within its timeout and was killed."""


class AuthenticationFailed(RemoteError):
    """The remote refused the credentials; retrying will not help."""


class HostKeyUnknown(RemoteError):
    """The SSH server's host key is not in known_hosts or does not match it."""


class PushRejected(RemoteError):
    """The remote refused the branch update (a hook, a protection, or a remote that kept
    moving on through every replay)."""
