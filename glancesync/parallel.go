package glancesync

import (
	"sync"
	"sync/atomic"
)

// parallel calls f(i) for each i in [0, count), on at most n goroutines
// that take the next i in turn, and returns when all have ended. A
// goroutine whose f returns false takes no further i (the others go on
// until they do the same or the i run out).
func parallel(n, count int, f func(i int) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count || !f(i) {
					return
				}
			}
		}()
	}
	wg.Wait()
}
