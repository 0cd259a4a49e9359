package crl

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// TestJobRefusedCRLIsFetchedAgain: the HTTP validators (ETag,
// Last-Modified) of a CRL the job refused are not kept, so a later run
// fetches it whole and, once it is acceptable, applies it; kept, every
// later fetch was a 304 and the revocation in it was never seen.
func TestJobRefusedCRLIsFetchedAgain(t *testing.T) {
	w := newWorld(t)
	cache := t.TempDir()
	w.serve(crlT(w.registrar, 1), 0, 0)
	run(t, w.job(t, cache, t0, true))
	// CRL 2 revokes img-1 but is dated an hour ahead of the job's clock
	ahead := w.registrar.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: t0.Add(time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour),
		Entries: []pki.Revoked{{Serial: big.NewInt(11), Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}}})
	w.serve(ahead, 0, 0)
	if rep := run(t, w.job(t, cache, t0, true)); len(rep.Refused) != 1 || rep.Refused[0].Reason != ReasonFuture {
		t.Fatalf("CRL 2 not refused as future: %+v", rep.Refused)
	}
	before := w.notModified.Load()
	run(t, w.job(t, cache, t0.Add(2*time.Hour), true))
	if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateRevoked || img.Status != StatusDeactivated {
		t.Fatalf("img-1 two hours later (304s %d): %+v", w.notModified.Load()-before, img)
	}
}

// TestJobHoldKeptWithoutCRL: a run that cannot write its cache fails (after
// applying what it found), and a hold is lifted only by a CRL in hand: a
// later run whose fetch fails, with no cache behind it, keeps the hold.
func TestJobHoldKeptWithoutCRL(t *testing.T) {
	w := newWorld(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(file, "cache") // under a regular file: never writable
	w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
	rep, err := w.job(t, cache, t0, true).Run(context.Background(), false)
	if err == nil || len(rep.Errors) == 0 {
		t.Fatalf("a run that could not write its cache succeeded: %+v", rep)
	}
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold || img.Status != StatusDeactivated {
		t.Fatalf("hold not applied: %+v", img)
	}
	w.serve(nil, 503, 0)
	_, _ = w.job(t, cache, t0.Add(time.Minute), true).Run(context.Background(), false)
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold || img.Status != StatusDeactivated {
		t.Fatalf("hold lifted with no CRL in hand: %+v", img)
	}
	// a CRL without the entry lifts it
	w.serve(crlT(w.registrar, 2), 0, 0)
	_, _ = w.job(t, cache, t0.Add(2*time.Minute), true).Run(context.Background(), false)
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateValid || img.Status != StatusActive {
		t.Fatalf("hold not lifted by a newer CRL: %+v", img)
	}
}

// TestJobWriteOrder: a revoked image is deactivated even when Glance
// refuses its properties (a full property quota: 413), and the next run
// writes them (a hold is written before its deactivation, and retried); a
// released hold whose reactivation fails keeps its hold
// properties, so the next run reactivates it.
func TestJobWriteOrder(t *testing.T) {
	w := newWorld(t)
	j := w.job(t, t.TempDir(), t0, true)
	w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise},
		pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
	w.cat.fail = map[string]int{"set": 2}
	if rep, err := j.Run(context.Background(), false); err == nil || rep.FailedWrites != 2 {
		t.Fatalf("failed writes not reported: %v, FailedWrites %d, want 2", err, rep.FailedWrites)
	}
	if img := w.cat.get("img-1"); img.Status != StatusDeactivated {
		t.Fatalf("revoked img-1 active after its properties write failed: %+v", img)
	}
	run(t, j)
	if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateRevoked {
		t.Fatalf("img-1 not flagged by the next run: %+v", img)
	}
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold || img.Properties[PropDeactivatedBy] != DeactivatedByHold {
		t.Fatalf("img-2 not flagged hold by the next run: %+v", img)
	}

	w.serve(crlT(w.registrar, 2, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}), 0, 0)
	w.cat.fail = map[string]int{"reactivate": 1}
	if _, err := j.Run(context.Background(), false); err == nil {
		t.Fatal("failed reactivation not reported")
	}
	if img := w.cat.get("img-2"); img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateHold || img.Properties[PropDeactivatedBy] != DeactivatedByHold {
		t.Fatalf("after a failed reactivation: %+v", img)
	}
	run(t, j)
	if img := w.cat.get("img-2"); img.Status != StatusActive || img.Properties[PropGlobalValidity] != StateValid || img.Properties[PropDeactivatedBy] != "" {
		t.Fatalf("released hold not reactivated by the next run: %+v", img)
	}
}

// TestJobUncheckedWrite: a write whose check (the image read again) fails
// is a failed write: reported, counted in FailedWrites so that the daemon
// runs again soon, and the next run finds the image as the write left it.
func TestJobUncheckedWrite(t *testing.T) {
	w := newWorld(t)
	j := w.job(t, t.TempDir(), t0, true)
	w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}), 0, 0)
	w.cat.fail = map[string]int{"get": 1}
	rep, err := j.Run(context.Background(), false)
	if err == nil || rep.FailedWrites != 1 || len(rep.LostWrites) != 0 {
		t.Fatalf("unchecked write: %v, FailedWrites %d, LostWrites %v; want an error and 1 failed write", err, rep.FailedWrites, rep.LostWrites)
	}
	if rep := run(t, j); rep.FailedWrites != 0 {
		t.Fatalf("next run: FailedWrites %d", rep.FailedWrites)
	}
	if img := w.cat.get("img-1"); img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateRevoked {
		t.Fatalf("revoked img-1 after the unchecked write: %+v", img)
	}
}

// TestJobHoldKeptWithOlderCRL: a hold is lifted only by a CRL newer than
// the one that imposed it: not by an older copy of the CA's CRL (a cache
// that lost the newer one, a stale crl_files copy) when the fetch fails.
func TestJobHoldKeptWithOlderCRL(t *testing.T) {
	w := newWorld(t)
	cache := t.TempDir()
	w.serve(crlT(w.registrar, 1), 0, 0)
	run(t, w.job(t, cache, t0, true))
	older := t.TempDir()
	if err := os.CopyFS(older, os.DirFS(cache)); err != nil {
		t.Fatal(err)
	}
	w.serve(crlT(w.registrar, 2, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
	run(t, w.job(t, cache, t0.Add(time.Minute), true))
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold {
		t.Fatalf("hold not applied: %+v", img)
	}
	w.serve(nil, 503, 0)
	_, _ = w.job(t, older, t0.Add(2*time.Minute), true).Run(context.Background(), false)
	if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold || img.Status != StatusDeactivated {
		t.Fatalf("hold lifted by the older CRL 1: %+v", img)
	}
}
