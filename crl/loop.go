package crl

import (
	"context"
	"math/rand/v2"
	"time"
)

// TransitRecheck is how soon the daemon runs again after a run that found
// a revoked or held image whose data Glance was still writing (Report
// InTransit): Glance saves, when the write ends, the image as it read it
// when the write began, so the flag the run wrote may be lost and the image
// become active as valid; the next run finds it so and deactivates it.
const TransitRecheck = time.Minute

// RunLoop calls run once at once, then every interval plus a random delay
// of up to jitter, until ctx ends; after a run that answers soon, in
// TransitRecheck instead (when that is sooner). Errors are run's to
// report; the loop goes on. It returns ctx's error. An interval under a
// second is taken as one second.
func RunLoop(ctx context.Context, interval, jitter time.Duration, run func(context.Context) (soon bool)) error {
	interval = max(interval, time.Second)
	for {
		t := time.NewTimer(nextWait(interval, jitter, run(ctx)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// nextWait is the wait before the next run: the interval plus a random
// delay of up to jitter, or TransitRecheck after a run that asked to run
// again soon, when that is sooner.
func nextWait(interval, jitter time.Duration, soon bool) time.Duration {
	wait := interval
	if jitter > 0 {
		wait += rand.N(jitter)
	}
	if soon {
		wait = min(wait, TransitRecheck)
	}
	return wait
}
