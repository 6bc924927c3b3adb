//go:build tools

// Package katafygio pins the peer exporter katafygio for the benchmarks; it is built with
// `go build github.com/bpineau/katafygio` from this module (see benchmarks/cluster/peers.py).
package katafygio

import _ "github.com/bpineau/katafygio"
