package crl

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := RunLoop(ctx, time.Hour, time.Minute, nil, func(context.Context) time.Duration {
		calls++
		cancel()
		return 0
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v, %d calls; want context.Canceled after the run at start", err, calls)
	}
}

// TestRunLoopWake: a wake (the daemon's reload) starts a run at once,
// not an interval later; one sent during a run starts the next when it
// ends.
func TestRunLoopWake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{}, 1)
	ran := make(chan int)
	done := make(chan error, 1)
	calls := 0
	go func() {
		done <- RunLoop(ctx, time.Hour, 0, wake, func(context.Context) time.Duration {
			calls++
			if calls == 2 {
				wake <- struct{}{} // a reload during the second run
			}
			ran <- calls
			return 0
		})
	}()
	if n := <-ran; n != 1 {
		t.Fatalf("run %d at start", n)
	}
	wake <- struct{}{}
	for want := 2; want <= 3; want++ {
		select {
		case n := <-ran:
			if n != want {
				t.Fatalf("run %d, want %d", n, want)
			}
		case <-time.After(time.Minute): // a bound for the failure, not a measure
			t.Fatalf("run %d not started by the wake: the loop waits for its hour", want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestNextWait: after a run that found revoked images still being written
// into Glance, the next run comes within TransitRecheck, not an interval.
func TestNextWait(t *testing.T) {
	for _, tc := range []struct {
		name             string
		interval, jitter time.Duration
		next             time.Duration
		lo, hi           time.Duration
	}{
		{"ok interval", time.Hour, 0, 0, time.Hour, time.Hour},
		{"ok interval and jitter", time.Hour, time.Minute, 0, time.Hour, time.Hour + time.Minute},
		{"ok soon", time.Hour, time.Minute, TransitRecheck, TransitRecheck, TransitRecheck},
		{"ok soon but the interval is shorter", 10 * time.Second, 0, TransitRecheck, 10 * time.Second, 10 * time.Second},
		{"ok a retry", time.Hour, time.Minute, 4 * time.Minute, 4 * time.Minute, 4 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := nextWait(tc.interval, tc.jitter, tc.next); w < tc.lo || w > tc.hi {
				t.Fatalf("wait %s, want within [%s, %s]", w, tc.lo, tc.hi)
			}
		})
	}
}

// TestInTransit: an image whose properties Glance may still overwrite is
// one whose data is being written, or a queued one this run flagged; a
// queued image already flagged (the sync leaves a refused download queued
// for hours) and a killed one are not, or the daemon would run every
// minute for ever and crl --once exit 4 on every run.
func TestInTransit(t *testing.T) {
	for _, tc := range []struct {
		status string
		wrote  bool
		want   bool
	}{
		{"saving", false, true}, {"uploading", false, true}, {"importing", false, true},
		{"queued", true, true}, {"queued", false, false},
		{"killed", true, false}, {"active", true, false}, {"deactivated", true, false},
	} {
		if got := inTransit(Image{Status: tc.status}, tc.wrote); got != tc.want {
			t.Errorf("status %s, wrote %v: in transit %v, want %v", tc.status, tc.wrote, got, tc.want)
		}
	}
}
