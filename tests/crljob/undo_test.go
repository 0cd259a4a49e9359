package crljob

import (
	"context"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestReleaseRechecksOtherHolds: a hold withdrawn (removeFromCRL) does not
// reactivate an image that another CA's CRL still holds, and the job never
// reactivates an image an operator deactivated. Images a, b and c share
// the creator; a's image certificate is held by the Registrar CA and the
// creator by the people CA; c was deactivated by hand before.
func TestReleaseRechecksOtherHolds(t *testing.T) {
	s := newSite(t, "a", "b", "c")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := glance.Deactivate(ctx, s.cloud.ImageClient(t, ostest.CloudAdmin), s.ids["c"]).ExtractErr(); err != nil {
		t.Fatalf("operator's deactivation of c: %v", err)
	}
	s.revoke("registrar-ca", "--cert", "images/a.json.crt", "--reason", "certificateHold")
	s.revoke("people-ca", "--cert", "pki/creator.pem", "--reason", "certificateHold")
	s.crlRun(0)
	want := func(when string, status map[string]string, validity string) {
		t.Helper()
		for n, st := range status {
			im := s.image(n)
			marker := crl.DeactivatedByHold
			if n == "c" || st == "active" {
				marker = "" // the job did not deactivate c
			}
			if string(im.Status) != st || im.Properties[crl.PropGlobalValidity] != validity || im.Properties[crl.PropDeactivatedBy] != marker {
				t.Errorf("%s: image %s is %s, %s, marker %q; want %s, %s, %q", when, n, im.Status, im.Properties[crl.PropGlobalValidity],
					im.Properties[crl.PropDeactivatedBy], st, validity, marker)
			}
		}
	}
	want("both holds", map[string]string{"a": "deactivated", "b": "deactivated", "c": "deactivated"}, crl.StateHold)

	// the Registrar CA withdraws a's hold: the creator's holds a still
	s.revoke("registrar-ca", "--cert", "images/a.json.crt", "--reason", "removeFromCRL")
	if rep := s.crlRun(0); change(rep, s.ids["a"]) != nil && change(rep, s.ids["a"]).Reactivate {
		t.Fatalf("a reactivated while its creator is on hold: %+v", rep.Changes)
	}
	want("the image's hold withdrawn", map[string]string{"a": "deactivated", "b": "deactivated", "c": "deactivated"}, crl.StateHold)
	if a := s.image("a"); a.Properties[crl.PropRevokedRole] != "creator" {
		t.Errorf("a held for %q, want the creator's hold", a.Properties[crl.PropRevokedRole])
	}

	// the people CA withdraws the creator's: a and b come back, not c
	s.revoke("people-ca", "--cert", "pki/creator.pem", "--reason", "removeFromCRL")
	s.crlRun(0)
	want("every hold withdrawn", map[string]string{"a": "active", "b": "active", "c": "deactivated"}, crl.StateValid)
	if rep := s.crlRun(0); rep.Writes != 0 {
		t.Fatalf("rerun wrote: %+v", rep.Changes)
	}
}
