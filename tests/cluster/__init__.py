"""A real local Kubernetes control plane (etcd, kube-apiserver, controllers, kwok) for tests.

``python -m tests.cluster build|up|down`` drives it from a shell; ``tests.cluster.fixtures`` is
the pytest plugin. The Go modules next to this file only build the binaries.
"""
