"""kube2git: continuously capture the state of a Kubernetes cluster into Git.

The package holds the async pipeline (cluster client, coalescer, serializer, git store), the
command line, configuration, health and metrics. The pure object filters live in ``filters``.
"""

__version__ = "0.1.0"
