//go:build race

package proxy

// raceBuild: the race detector is on (its instrumentation allocates).
const raceBuild = true
