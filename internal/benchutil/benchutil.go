// Package benchutil holds what the benchmarks of several packages share: a
// baseline measured in the same run, against which they report ratios.
package benchutil

import "time"

// BestOf returns the fastest of k runs of f: a baseline the machine's noise
// (other jobs on shared cores) can only slow down, not speed up.
func BestOf(k int, f func()) time.Duration {
	var best time.Duration
	for range k {
		t := time.Now()
		f()
		if d := time.Since(t); best == 0 || d < best {
			best = d
		}
	}
	return best
}
