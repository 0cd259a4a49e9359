package validator

import (
	"strings"

	"github.com/imagetrust/imagetrust/internal/pki"
	"testing"
	"time"
)

// TestDecisionMessagesForUsers: a refusal's message is read by the user who
// ran `openstack server create`: it says what failed in a user's words (not
// the name of a Glance property) and what to do, and a refused tag lists a
// few candidates, not up to a thousand.
func TestDecisionMessagesForUsers(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	img := catalogImage(t, tr, w.bundle(bundleOpts{}))
	cases := []struct {
		name      string
		edit      func(*CatalogImage)
		want      []string
		notWanted []string
	}{
		{name: "revoked", edit: func(c *CatalogImage) {
			c.Properties[PropGlobalValidity] = GlobalRevoked
			c.Properties[PropRevocationReason] = "keyCompromise"
			c.Properties[PropRevokedRole] = "image"
			c.Properties[PropRevocationDate] = "2026-01-02T03:04:05Z"
		}, want: []string{"it was revoked (keyCompromise, image certificate, since 2026-01-02T03:04:05Z)", "Use another image of the tag, or ask your VO or the site operators."}},
		{name: "hold", edit: func(c *CatalogImage) { c.Properties[PropGlobalValidity] = GlobalHold }, want: []string{"its certificate is on hold", "ask your VO"}},
		{name: "unknown", edit: func(c *CatalogImage) { c.Properties[PropGlobalValidity] = GlobalUnknown }, want: []string{"the site cannot tell whether it was revoked", "Try again later"}},
		{name: "missing", edit: func(c *CatalogImage) { delete(c.Properties, PropGlobalValidity) }, want: []string{"the site has not yet checked whether it was revoked", "Try again later"}},
		{name: "blacklisted", edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = LocalBlacklist }, want: []string{"the site blacklisted it.", "Use another image of the tag"}},
		{name: "deactivated", edit: func(c *CatalogImage) { c.Status = "deactivated" }, want: []string{"its Glance status is deactivated.", "Use another image of the tag"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ci := img
			ci.Properties = map[string]string{}
			for k, v := range img.Properties {
				ci.Properties[k] = v
			}
			c.edit(&ci)
			d := tr.DecideBoot(ci, pol, testNow)
			if d.Allowed {
				t.Fatal("allowed")
			}
			for _, s := range c.want {
				if !strings.Contains(d.Message, s) {
					t.Errorf("message %q lacks %q", d.Message, s)
				}
			}
			if strings.Contains(d.Message, "global validity") {
				t.Errorf("message %q speaks of the property, not to the user", d.Message)
			}
		})
	}

	// revoked by a CRL of the trust store (the CRL job has not flagged it):
	// the same words as the flag, not "its catalogue record does not verify"
	rb := w.bundle(bundleOpts{})
	rimg := catalogImage(t, tr, rb)
	w.crls = [][]byte{revokeCRL(w.regRoot, 5, pki.Revoked{Serial: rb.imageCert.SerialNumber, Reason: 1})}
	rtr := w.trust()
	w.crls = nil
	if d := rtr.DecideBoot(rimg, pol, testNow); d.Allowed || d.Message != "image "+rimg.ID+" may not boot: it was revoked. Use another image of the tag, or ask your VO or the site operators." {
		t.Errorf("revoked by the trust store's CRL: %q", d.Message)
	}
	// a tag of refused images advises once, whatever their reasons
	tam := catalogImage(t, rtr, w.bundle(bundleOpts{}))
	tam.Properties[PropImageNotAfter] = "2099-01-01T00:00:00Z"
	if d, _ := rtr.DecideTag([]CatalogImage{tam, rimg}, pol, testNow); d.Allowed || strings.Count(d.Message, "site operators") != 1 {
		t.Errorf("tag of a tampered and a revoked image: %q", d.Message)
	}

	// a tag of many refused images: three listed, the rest counted
	var cands []CatalogImage
	for i := range 8 {
		ci := catalogImage(t, tr, w.bundle(bundleOpts{mutateDesc: func(d map[string]any) {
			d["created"] = testNow.AddDate(0, 0, -10-i).Format(time.RFC3339)
		}}))
		ci.Properties[PropLocalValidity] = LocalBlacklist
		cands = append(cands, ci)
	}
	d, all := tr.DecideTag(cands, pol, testNow)
	if d.Allowed || len(all) != 8 {
		t.Fatalf("allowed %v, %d decisions", d.Allowed, len(all))
	}
	for i, c := range cands {
		if got := strings.Contains(d.Message, c.ID); got != (i < 3) {
			t.Errorf("candidate %d (%s) listed: %v, want %v: %s", i, c.ID, got, i < 3, d.Message)
		}
	}
	for _, s := range []string{"(8 considered)", "and 5 older images, refused too.", "Use another image of the tag, or ask your VO or the site operators."} {
		if !strings.Contains(d.Message, s) {
			t.Errorf("tag message lacks %q: %s", s, d.Message)
		}
	}
	if n := strings.Count(d.Message, "ask your VO"); n != 1 {
		t.Errorf("tag message gives its advice %d times: %s", n, d.Message)
	}
}
