"""Benchmarks of exporters (kube2git, katafygio) against a large simulated cluster.

``python -m benchmarks.cluster --scale S|M|L`` starts a local control plane with kwok nodes
(``tests/cluster``), fills it with realistic objects, runs each exporter as a subprocess under
its own client identity and measures it from outside: initial capture, change-to-commit
latency under steady edits, commits during an autoscaling storm, a restart during change, API
requests (audit log), owned children and secret values that reached the repository, CPU and
memory. Results go to ``benchmarks/results/`` as markdown, JSON and a PNG plot.
"""
