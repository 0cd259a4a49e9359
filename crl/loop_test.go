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
	err := RunLoop(ctx, time.Hour, time.Minute, func(context.Context) error {
		calls++
		cancel()
		return errors.New("a failed run does not stop the loop")
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v, %d calls; want context.Canceled after the run at start", err, calls)
	}
}
