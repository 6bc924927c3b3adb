"""Compose the filters of a :class:`~filters.policy.Policy` into one callable."""

from __future__ import annotations

from collections.abc import Sequence

from filters.autoscaling import DropHpaReplicas, HpaIndex
from filters.base import Body, Filter, Skip
from filters.owned import SkipControlled
from filters.policy import Policy
from filters.secrets import (
    ConfigMapBinaryFingerprints,
    EmbeddedSecrets,
    SecretValues,
    SkipHelmReleases,
    SkipSecretTypes,
    treatment_for,
)
from filters.select import Select
from filters.strip import DropAnnotations, DropFields, DropServiceClusterIP, IgnoreFields


class Pipeline:
    """Run filters in order; the first :class:`Skip` ends the run.

    The pipeline takes ownership of the body it is given and may change it in place: callers
    pass a freshly parsed object (as the API client and the normalizer do), never a shared one.
    """

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = tuple(filters)

    def __call__(self, body: Body) -> Body | Skip:
        for step in self.filters:
            result = step(body)
            if isinstance(result, Skip):
                return result
            body = result
        return body


def build_pipeline(
    policy: Policy, *, hpa_index: HpaIndex | None = None, fingerprint_key: bytes = b""
) -> Pipeline:
    """The default chain for ``policy``: cheap skips first, then the reductions.

    ``hpa_index`` is shared with whoever observes HPAs (the normalizer's first pass, or the
    live watch); ``fingerprint_key`` is the HMAC key of the secret fingerprint mode.
    """
    steps: list[Filter] = [Select(policy.select)]
    if policy.skip_controlled:
        steps.append(SkipControlled(policy.keep_controlled_types))
    if policy.secrets.skip_helm_releases:
        steps.append(SkipHelmReleases())
    steps += [
        SkipSecretTypes(policy.secrets.skip_types),
        SecretValues(treatment_for(policy.secrets.mode, fingerprint_key)),
        EmbeddedSecrets(),
        DropFields(policy.drop_fields),
        DropAnnotations(policy.drop_annotations),
        IgnoreFields(policy.ignore_fields),
    ]
    if policy.drop_service_cluster_ip:
        steps.append(DropServiceClusterIP())
    if policy.secrets.configmap_binary_fingerprints:
        steps.append(ConfigMapBinaryFingerprints())
    if policy.drop_hpa_replicas and hpa_index is not None:
        steps.append(DropHpaReplicas(hpa_index))
    return Pipeline(steps)
