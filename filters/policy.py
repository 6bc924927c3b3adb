"""The filter policy: what kube2git keeps of each object. Defaults are DESIGN.md's policy.

Every attribute has a docstring: the configuration reference is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

EXTENDS_DEFAULT = MappingProxyType({"extends_default": True})
"""Field metadata of a drop list: a list given in the configuration is added to the default
list, unless ``filters.replace_defaults`` names it (the configuration loader does this)."""


class SecretMode(Enum):
    """How Secret values are recorded."""

    REDACT = "redact"
    """Keys kept, values replaced by empty strings; an annotation says so."""
    FINGERPRINT = "fingerprint"
    """Keys kept, values replaced by keyed HMAC-SHA256 fingerprints: a change is visible."""
    SKIP = "skip"
    """Secrets are not recorded at all."""
    SOPS = "sops"
    """Values encrypted in SOPS's own format for the ``age_recipients``, which ``sops``, Flux
    and ``kube2git restore`` decrypt; an unchanged Secret keeps its bytes."""


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Fields to ignore (remove) on objects of some types."""

    types: tuple[str, ...]
    """Type patterns ``[GROUP/]KIND`` (globs; ``*`` for every type)."""
    pointers: tuple[str, ...]
    """JSON pointers (RFC 6901) of the fields; ``*`` matches any list item or map key."""


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    """Which objects are recorded at all."""

    include_types: tuple[str, ...] = ()
    """Only these types (``[GROUP/]KIND`` globs); empty means every type."""
    exclude_types: tuple[str, ...] = field(
        default=(
            "Event",
            "Lease",
            "Endpoints",
            "EndpointSlice",
            "ControllerRevision",
            "networking.k8s.io/IPAddress",
        ),
        metadata=EXTENDS_DEFAULT,
    )
    """Types never recorded: high-churn, system-written types by default."""
    include_namespaces: tuple[str, ...] = ("*",)
    """Namespaces (globs) whose objects are recorded; cluster-scoped objects are not affected."""
    exclude_namespaces: tuple[str, ...] = field(default=(), metadata=EXTENDS_DEFAULT)
    """Namespaces (globs) whose objects are not recorded."""
    exclude_names: tuple[str, ...] = field(
        default=("ConfigMap:kube-root-ca.crt",), metadata=EXTENDS_DEFAULT
    )
    """Objects not recorded, as ``[TYPE:][NAMESPACE/]NAME`` globs (the default skips the CA
    bundle that a controller publishes into every namespace)."""
    label_selector: str = "!kube-aggregator.kubernetes.io/automanaged"
    """A Kubernetes label selector the object must match (``a=b,c!=d,e in (x,y),!f``); the
    default leaves out the API services that the API server manages itself."""
    opt_out_label: str = "kube2git.io/skip"
    """An object with this label set to ``"true"`` is not recorded."""


@dataclass(frozen=True, slots=True)
class SecretPolicy:
    """How Secrets and binary ConfigMap data are kept out of Git."""

    mode: SecretMode = SecretMode.REDACT
    """``redact``, ``fingerprint``, ``skip`` or ``sops``."""
    skip_types: tuple[str, ...] = field(
        default=("kubernetes.io/service-account-token", "helm.sh/release.v1"),
        metadata=EXTENDS_DEFAULT,
    )
    """Secret ``type`` values never recorded (tokens, Helm release blobs)."""
    skip_helm_releases: bool = True
    """Skip Helm release records, in Secrets or ConfigMaps, of Helm 3 (named
    ``sh.helm.release.v1.*``, labelled ``owner=helm``) and Helm 2 (labelled ``OWNER=TILLER``):
    they hold the chart's values and rendered Secrets."""
    fingerprint_key_file: str = ""
    """File holding the HMAC key for ``fingerprint`` mode, and for ``sops`` mode's keyed
    fingerprint that tells an unchanged Secret without its plaintext (required in both modes;
    at least 16 bytes, surrounding whitespace ignored)."""
    age_recipients: tuple[str, ...] = ()
    """age public keys (``age1...``) that ``sops`` mode encrypts for (required in that mode);
    each recipient's identity alone decrypts. Public keys only: nothing here can decrypt."""
    age_identity_file: str = ""
    """age identity file (``AGE-SECRET-KEY-1...`` lines, as ``age-keygen`` writes) that
    ``restore``, ``diff`` and ``rekey`` decrypt with; empty: the ``SOPS_AGE_KEY_FILE``
    environment variable, as sops reads it. Optional for ``run``: with it, the first change of
    a Secret after a restart re-encrypts only that value instead of the whole Secret."""
    configmap_binary_fingerprints: bool = True
    """Replace ConfigMap ``binaryData`` values by SHA-256 fingerprints."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole filter policy."""

    select: SelectionPolicy = field(default_factory=SelectionPolicy)
    """Which objects are recorded."""
    skip_controlled: bool = True
    """Skip objects that another object controls (an ownerReference with ``controller: true``):
    a restore would duplicate what the controller re-creates."""
    keep_controlled_types: tuple[str, ...] = ()
    """Types recorded even when controlled (``[GROUP/]KIND`` globs)."""
    drop_fields: tuple[str, ...] = field(
        default=(
            "/status",
            "/metadata/managedFields",
            "/metadata/resourceVersion",
            "/metadata/uid",
            "/metadata/generation",
            "/metadata/creationTimestamp",
            "/metadata/selfLink",
            "/metadata/deletionTimestamp",
            "/metadata/deletionGracePeriodSeconds",
        ),
        metadata=EXTENDS_DEFAULT,
    )
    """JSON pointers removed from every object: status and server bookkeeping."""
    drop_annotations: tuple[str, ...] = field(
        default=(
            "kubectl.kubernetes.io/last-applied-configuration",
            "deployment.kubernetes.io/*",
            "control-plane.alpha.kubernetes.io/leader",
            "autoscaling.alpha.kubernetes.io/conditions",
            "autoscaling.alpha.kubernetes.io/current-metrics",
            "endpoints.kubernetes.io/last-change-trigger-time",
            "deprecated.daemonset.template.generation",
            "pv.kubernetes.io/*",
            "volume.kubernetes.io/selected-node",
            "volume.kubernetes.io/storage-provisioner",
            "volume.beta.kubernetes.io/storage-provisioner",
            "kubernetes.io/psp",
            "batch.kubernetes.io/job-tracking",
        ),
        metadata=EXTENDS_DEFAULT,
    )
    """Annotations (globs) removed: server-written bookkeeping, and the last-applied
    configuration, which would leak Secret data."""
    ignore_fields: tuple[FieldRule, ...] = field(
        default=(
            FieldRule(("PersistentVolumeClaim",), ("/spec/volumeName",)),
            FieldRule(("Pod",), ("/spec/nodeName",)),
            FieldRule(
                ("PersistentVolume",), ("/spec/claimRef/resourceVersion", "/spec/claimRef/uid")
            ),
            FieldRule(("Namespace",), ("/metadata/labels/kubernetes.io~1metadata.name",)),
            FieldRule(
                ("*",),
                (
                    "/spec/template/metadata/creationTimestamp",
                    "/spec/jobTemplate/metadata/creationTimestamp",
                    "/spec/jobTemplate/spec/template/metadata/creationTimestamp",
                    "/spec/volumeClaimTemplates/*/metadata/creationTimestamp",
                ),
            ),
        ),
        metadata=EXTENDS_DEFAULT,
    )
    """Fields removed per type: server-assigned values that a restore must not carry."""
    drop_service_cluster_ip: bool = True
    """Remove a Service's ``clusterIP``/``clusterIPs`` (kept when ``None``: headless)."""
    drop_hpa_replicas: bool = True
    """Leave out ``spec.replicas`` of workloads that a HorizontalPodAutoscaler scales, so that
    scaling never makes a commit."""
    secrets: SecretPolicy = field(default_factory=SecretPolicy)
    """Secrets and binary data."""
    replace_defaults: tuple[str, ...] = ()
    """Lists of this section, named as below ``filters`` (``drop_annotations``,
    ``select.exclude_types``...), whose value in the file replaces the default list instead of
    extending it. Copies of values and of the applied object are dropped from Secrets even
    then."""
