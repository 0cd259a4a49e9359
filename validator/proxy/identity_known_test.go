package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// floodIdentity holds every validation of a token starting "made-up"
// until release, then refuses it; it accepts any other token at once.
type floodIdentity struct {
	entered chan string
	release chan struct{}
	once    sync.Once
}

func (f *floodIdentity) Validate(_ context.Context, token string) (*Caller, error) {
	if strings.HasPrefix(token, "made-up") {
		f.entered <- token
		<-f.release
		return nil, ErrInvalidToken
	}
	return &Caller{UserID: "u-" + token, ProjectID: "p"}, nil
}

// TestValidationKnownClientNotBehindFlood: a flood of made-up tokens from
// many addresses holds every validation place and waiting place (Keystone
// slow to refuse them). A new token of a client for which a token was
// validated before (a user renewing where they used the last) is still
// validated, in the places of known clients; a client never validated
// for waits behind the flood and is refused (errValidationBusy); made-up
// tokens make no client known. Before the fix the known client's token
// waited behind the flood too.
func TestValidationKnownClientNotBehindFlood(t *testing.T) {
	f := &floodIdentity{entered: make(chan string, 64), release: make(chan struct{})}
	ci := newCachedIdentity(f, time.Minute, 64, time.Now, nil)
	ci.limitValidations(4, 2*time.Second)
	defer func() { f.once.Do(func() { close(f.release) }) }()
	at := func(client string) context.Context { return withClient(context.Background(), client) }

	if _, err := ci.Validate(at("192.0.2.10"), "good-1"); err != nil {
		t.Fatal(err)
	}
	n := maxValidationsFor(4)
	flood := make(chan error, 2*n)
	for i := range 2 * n { // (n held, n waiting)
		go func() {
			_, err := ci.Validate(at(fmt.Sprintf("198.51.100.%d", i)), fmt.Sprintf("made-up-%d", i))
			flood <- err
		}()
	}
	for range n {
		<-f.entered
	}
	waitFor(t, "the flood in every waiting place", func() bool { return ci.places.waiting.Load() == int64(n) })

	if cl, err := ci.Validate(at("192.0.2.10"), "good-2"); err != nil || cl.UserID != "u-good-2" {
		t.Fatalf("a known client's new token during the flood: %v %v, want validated", cl, err)
	}
	if _, err := ci.Validate(at("203.0.113.7"), "good-3"); !errors.Is(err, errValidationBusy) {
		t.Errorf("a client never validated for, during the flood: %v, want validation-busy", err)
	}
	f.once.Do(func() { close(f.release) })
	for range 2 * n {
		if err := <-flood; !errors.Is(err, ErrInvalidToken) && !errors.Is(err, errValidationBusy) {
			t.Errorf("made-up token: %v", err)
		}
	}
	for i := range 2 * n {
		if _, ok := ci.known.get(fmt.Sprintf("198.51.100.%d", i)); ok {
			t.Errorf("198.51.100.%d known after a made-up token", i)
		}
	}
	checkLimitEmpty(t, ci.places)
	checkLimitEmpty(t, ci.knownPlaces)
}

// TestValidationKnownFlooderKeepsItsShare: a client made known by one
// real token (any user's, from one address) floods made-up tokens from
// that address while Keystone is slow to refuse them. It takes no more
// than its share of the known clients' places: the rest of its flood
// validates in the shared places, and another known client's new token
// is validated at once. Before, a known client's validations took every
// known place while any was free and then every waiting place (a share
// bounded only the waiting), so the other known client waited behind the
// flood and was refused validation-busy: one user with one token undid
// the known clients' places for all.
func TestValidationKnownFlooderKeepsItsShare(t *testing.T) {
	f := &floodIdentity{entered: make(chan string, 256), release: make(chan struct{})}
	ci := newCachedIdentity(f, time.Minute, 64, time.Now, nil)
	ci.limitValidations(64, 2*time.Second)
	defer func() { f.once.Do(func() { close(f.release) }) }()
	at := func(client string) context.Context { return withClient(context.Background(), client) }
	const flooder, other = "192.0.2.66", "192.0.2.10"
	for _, c := range []string{flooder, other} {
		if _, err := ci.Validate(at(c), "good-"+c); err != nil {
			t.Fatal(err)
		}
	}
	k := ci.knownPlaces.n
	flood := make(chan error, 2*k)
	for i := range 2 * k { // (every known place and waiting place, before)
		go func() {
			_, err := ci.Validate(at(flooder), fmt.Sprintf("made-up-%d", i))
			flood <- err
		}()
	}
	held := func(l *gatedLimit) int { l.mu.Lock(); defer l.mu.Unlock(); return l.used + len(l.queue) }
	waitFor(t, "the flood placed", func() bool { return held(ci.knownPlaces)+held(ci.places) == 2*k })
	if got := held(ci.knownPlaces); got > ci.knownPlaces.perProject {
		t.Errorf("the flooder holds or waits for %d known places, want at most its share %d", got, ci.knownPlaces.perProject)
	}
	if cl, err := ci.Validate(at(other), "good-2"); err != nil || cl.UserID != "u-good-2" {
		t.Fatalf("another known client's new token during the flood: %v %v, want validated", cl, err)
	}
	f.once.Do(func() { close(f.release) })
	for range 2 * k {
		if err := <-flood; !errors.Is(err, ErrInvalidToken) && !errors.Is(err, errValidationBusy) {
			t.Errorf("made-up token: %v", err)
		}
	}
	checkLimitEmpty(t, ci.places)
	checkLimitEmpty(t, ci.knownPlaces)
}
