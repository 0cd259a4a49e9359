package crl

import (
	"context"
	"math/rand/v2"
	"time"
)

// RunLoop calls run once at once, then every interval plus a random delay
// of up to jitter, until ctx ends. Errors of run are run's to report; the
// loop goes on. It returns ctx's error. An interval under a second is
// taken as one second.
func RunLoop(ctx context.Context, interval, jitter time.Duration, run func(context.Context) error) error {
	interval = max(interval, time.Second)
	for {
		_ = run(ctx)
		wait := interval
		if jitter > 0 {
			wait += rand.N(jitter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
