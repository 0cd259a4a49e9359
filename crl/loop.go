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

// RunLoop calls run once at once, then again after the wait run returns:
// 0 for the interval plus a random delay of up to jitter, a shorter wait
// (TransitRecheck after a run that found images in transit, a retry after a
// failed run) when that is sooner, or at once when wake receives (the
// daemon's reload: a fresh CRL put in place, a new grace, must not wait for
// the interval); a wake during a run starts the next as soon as it ends.
// Errors are run's to report; the loop goes on. It returns ctx's error. An
// interval under a second is taken as one second. wake may be nil.
func RunLoop(ctx context.Context, interval, jitter time.Duration, wake <-chan struct{}, run func(context.Context) (next time.Duration)) error {
	interval = max(interval, time.Second)
	for {
		t := time.NewTimer(nextWait(interval, jitter, run(ctx)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// nextWait is the wait before the next run: the interval plus a random
// delay of up to jitter, or next when that is set and sooner.
func nextWait(interval, jitter, next time.Duration) time.Duration {
	wait := interval
	if jitter > 0 {
		wait += rand.N(jitter)
	}
	if next > 0 {
		wait = min(wait, next)
	}
	return wait
}
