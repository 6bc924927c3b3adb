"""Pure object filters: Kubernetes objects in, reduced objects (or a skip) out.

No I/O and no imports from ``exporter``: the same pipeline serves the live exporter and the
offline ``kube2git normalize``. Build one from a :class:`~filters.policy.Policy` with
:func:`~filters.pipeline.build_pipeline`.
"""

from filters.autoscaling import HpaIndex
from filters.base import Body, Filter, Skip
from filters.pipeline import Pipeline, build_pipeline
from filters.policy import Policy

__all__ = ["Body", "Filter", "HpaIndex", "Pipeline", "Policy", "Skip", "build_pipeline"]
