// Build-only module for kwok; kept apart from ../go.mod because kwok needs newer k8s.io
// libraries than the Kubernetes components we build there.
module kube2git.test/cluster/kwok

go 1.26.0

require sigs.k8s.io/kwok v0.8.0

tool sigs.k8s.io/kwok/cmd/kwok
