package validator

import (
	"maps"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
)

const mirror = "mirror-project"

func catalogImage(t *testing.T, tr *Trust, b *bundle) CatalogImage {
	t.Helper()
	r := tr.Verify(Input{Descriptor: b.desc, Signature: b.sig, Now: testNow})
	props, err := RecordProperties(r, b.desc, b.sig)
	if err != nil {
		t.Fatalf("record: %v (%+v)", err, r.Failed())
	}
	return CatalogImage{ID: b.d.UUID, Owner: mirror, Status: "active", Properties: props}
}

func TestDecideBoot(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	expired := w.bundle(bundleOpts{expires: testNow.AddDate(0, 0, 20)})
	cases := []struct {
		name    string
		edit    func(*CatalogImage)
		now     time.Time
		allowed bool
		reason  string
	}{
		{name: "ok catalogue image", allowed: true},
		{name: "fail not owned by the mirror project (a user's snapshot)", edit: func(c *CatalogImage) { c.Owner = "user-project" }, reason: DecisionNotInCatalogue},
		{name: "fail revoked", edit: func(c *CatalogImage) { c.Properties[PropGlobalValidity] = GlobalRevoked }, reason: DecisionGlobalPrefix + GlobalRevoked},
		{name: "fail revoked even with run-anyway", edit: func(c *CatalogImage) {
			c.Properties[PropGlobalValidity] = GlobalRevoked
			c.Properties[PropLocalValidity] = LocalRunAnyway
		}, reason: DecisionGlobalPrefix + GlobalRevoked},
		{name: "fail unknown validity", edit: func(c *CatalogImage) { c.Properties[PropGlobalValidity] = GlobalUnknown }, reason: DecisionGlobalPrefix + GlobalUnknown},
		{name: "fail odd validity", edit: func(c *CatalogImage) { c.Properties[PropGlobalValidity] = "Valid\n" + strings.Repeat("x", 500) }, reason: DecisionGlobalPrefix + "other"},
		{name: "fail blacklisted", edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = LocalBlacklist }, reason: DecisionBlacklisted},
		{name: "fail local flag in another case", edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = "Blacklist" }, reason: DecisionLocalUnknown},
		{name: "fail local flag misspelt", edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = "blacklisted" }, reason: DecisionLocalUnknown},
		{name: "fail local flag valid (not a value)", edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = "valid" }, reason: DecisionLocalUnknown},
		{name: "fail expired with run-anyway misspelt", now: testNow.AddDate(0, 6, 0), edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = "run_anyway" }, reason: DecisionLocalUnknown},
		{name: "fail deactivated", edit: func(c *CatalogImage) { c.Status = "deactivated" }, reason: DecisionNotActive},
		{name: "fail expired", now: testNow.AddDate(0, 6, 0), reason: DecisionExpired},
		{name: "ok expired with run-anyway", now: testNow.AddDate(0, 6, 0), edit: func(c *CatalogImage) { c.Properties[PropLocalValidity] = LocalRunAnyway }, allowed: true},
		{name: "fail edited not_after", edit: func(c *CatalogImage) { c.Properties[PropImageNotAfter] = "2099-01-01T00:00:00Z" }, reason: DecisionRecordTampered},
		{name: "fail record of another image", edit: func(c *CatalogImage) { c.ID = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f" }, reason: DecisionRecordTampered},
		{name: "fail an unsigned kernel_id", edit: func(c *CatalogImage) { c.Properties["kernel_id"] = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f" }, reason: DecisionRecordTampered},
		{name: "fail unsigned block device mappings", edit: func(c *CatalogImage) { c.Properties["block_device_mapping"] = `[{"source_type":"snapshot"}]` }, reason: DecisionRecordTampered},
		{name: "fail an unsigned rescue image", edit: func(c *CatalogImage) { c.Properties["base_image_ref"] = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f" }, reason: DecisionRecordTampered},
		{name: "ok Glance's sha512 is the signed one", edit: func(c *CatalogImage) {
			c.Properties["os_hash_algo"], c.Properties["os_hash_value"] = "sha512", c.Properties[PropSHA512]
		}, allowed: true},
		// bytes uploaded into a queued catalogue image by a mirror-project
		// credential other than the sync's (Glance's legacy policy lets a
		// reader upload): Glance hashed them, they are not the signed ones
		{name: "fail Glance's sha512 of other bytes", edit: func(c *CatalogImage) {
			c.Properties["os_hash_algo"], c.Properties["os_hash_value"] = "sha512", strings.Repeat("ab", 64)
		}, reason: DecisionRecordTampered},
		{name: "fail Glance's sha512 in upper case", edit: func(c *CatalogImage) {
			c.Properties["os_hash_algo"], c.Properties["os_hash_value"] = "sha512", strings.ToUpper(c.Properties[PropSHA512])
		}, reason: DecisionRecordTampered},
		{name: "ok Glance hashes with another algorithm (not compared, as by the sync)", edit: func(c *CatalogImage) {
			c.Properties["os_hash_algo"], c.Properties["os_hash_value"] = "sha256", strings.Repeat("ab", 32)
		}, allowed: true},
		{name: "fail forged signature", edit: func(c *CatalogImage) { c.Properties[PropSignature] = "AAAA" }, reason: DecisionRecordInvalid},
		{name: "fail no record", edit: func(c *CatalogImage) { delete(c.Properties, PropDescriptor) }, reason: DecisionRecordInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := catalogImage(t, tr, expired)
			if c.edit != nil {
				c.edit(&img)
			}
			now := c.now
			if now.IsZero() {
				now = testNow
			}
			d := tr.DecideBoot(img, pol, now)
			if d.Allowed != c.allowed {
				t.Fatalf("Allowed = %v, want %v: %s %v", d.Allowed, c.allowed, d.Message, d.Reasons)
			}
			if c.reason != "" && !contains(d.Reasons, c.reason) {
				t.Fatalf("reasons %v lack %q", d.Reasons, c.reason)
			}
			if !c.allowed && !strings.Contains(d.Message, img.ID) {
				t.Fatalf("message %q doesn't name the image", d.Message)
			}
		})
	}
	t.Run("ok unmanaged image for a project allowed to", func(t *testing.T) {
		d := tr.DecideBoot(CatalogImage{ID: "x", Owner: "p", Status: "active"}, BootPolicy{MirrorProject: mirror, AllowUnmanaged: true}, testNow)
		if !d.Allowed {
			t.Fatal(d.Message)
		}
	})
}

func TestDecideBootRevokedByTrustCRL(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	img := catalogImage(t, w.trust(), b)
	w.crls = [][]byte{revokeCRL(w.regRoot, 5, pki.Revoked{Serial: b.imageCert.SerialNumber, Reason: 1})}
	d := w.trust().DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow)
	if d.Allowed || !contains(d.Reasons, DecisionRecordInvalid) {
		t.Fatalf("revoked image allowed or wrong reason: %+v", d)
	}
}

func TestDecideTag(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	mk := func(daysAgo int) CatalogImage {
		b := w.bundle(bundleOpts{mutateDesc: func(d map[string]any) {
			d["created"] = testNow.AddDate(0, 0, -daysAgo).Format(time.RFC3339)
		}})
		return catalogImage(t, tr, b)
	}
	a, bb := mk(20), mk(12)
	d, _ := tr.DecideTag([]CatalogImage{a, bb}, pol, testNow)
	if !d.Allowed || d.ImageID != bb.ID {
		t.Fatalf("ok newest: got %s (%v), want %s", d.ImageID, d.Message, bb.ID)
	}
	bb.Properties[PropLocalValidity] = LocalBlacklist
	d, _ = tr.DecideTag([]CatalogImage{bb, a}, pol, testNow)
	if !d.Allowed || d.ImageID != a.ID {
		t.Fatalf("ok falls back to older: got %s", d.ImageID)
	}
	a.Properties[PropGlobalValidity] = GlobalRevoked
	d, all := tr.DecideTag([]CatalogImage{bb, a}, pol, testNow)
	if d.Allowed || len(all) != 2 || !contains(d.Reasons, DecisionBlacklisted) || !contains(d.Reasons, DecisionGlobalPrefix+GlobalRevoked) {
		t.Fatalf("fail none bootable: %+v", d)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// decideTagAll is DecideTag as it was before it stopped at the first
// bootable image: every candidate decided, then the newest bootable by the
// signed created time (then id). The reference for TestDecideTagLazy.
func decideTagAll(t *Trust, cands []CatalogImage, p BootPolicy, now time.Time) Decision {
	p.AllowUnmanaged = false
	var all []Decision
	for _, c := range cands {
		all = append(all, t.DecideBoot(c, p, now))
	}
	sort.SliceStable(all, func(i, j int) bool {
		if !all[i].Created.Equal(all[j].Created) {
			return all[i].Created.After(all[j].Created)
		}
		return all[i].ImageID > all[j].ImageID
	})
	for _, d := range all {
		if d.Allowed {
			return d
		}
	}
	return Decision{}
}

// TestDecideTagLazy: DecideTag decides candidates newest first by their
// (unsigned) created property and stops at the first bootable one; it must
// choose what deciding every candidate chooses, whatever the flags and
// however the properties were moved (an image whose created property was
// moved earlier or later must not win by it), with signed created times a
// fraction of a second apart.
func TestDecideTagLazy(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	base := testNow.AddDate(0, 0, -12).Truncate(time.Second)
	var imgs []CatalogImage
	for _, off := range []time.Duration{0, 200 * time.Millisecond, 700 * time.Millisecond, time.Second, 3 * time.Second, time.Hour, 2 * time.Hour, 48 * time.Hour} {
		b := w.bundle(bundleOpts{mutateDesc: func(d map[string]any) { d["created"] = base.Add(-off).Format(time.RFC3339Nano) }})
		imgs = append(imgs, catalogImage(t, tr, b))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		cands := make([]CatalogImage, len(imgs))
		for i, im := range imgs {
			c := im
			c.Properties = maps.Clone(im.Properties)
			switch r.IntN(6) {
			case 0:
				c.Properties[PropLocalValidity] = LocalBlacklist
			case 1:
				c.Properties[PropGlobalValidity] = GlobalRevoked
			case 2: // moved later: it would be taken up first
				c.Properties[PropCreated] = testNow.Format(time.RFC3339)
			case 3: // moved earlier
				c.Properties[PropCreated] = base.AddDate(-1, 0, 0).Format(time.RFC3339)
			case 4:
				delete(c.Properties, PropCreated)
			}
			cands[i] = c
		}
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		got, _ := tr.DecideTag(cands, pol, testNow)
		want := decideTagAll(tr, cands, pol, testNow)
		if got.Allowed != want.Allowed || got.ImageID != want.ImageID {
			t.Fatalf("trial %d: DecideTag chose %q (allowed %v), deciding every candidate chooses %q (allowed %v)", trial, got.ImageID, got.Allowed, want.ImageID, want.Allowed)
		}
	}
}

// TestRecordCacheBounded: the record cache holds at most two generations;
// a record that left it is verified again and decided the same, and a
// record in the older generation moves back when used.
func TestRecordCacheBounded(t *testing.T) {
	old := recordCacheGeneration
	recordCacheGeneration = 2
	t.Cleanup(func() { recordCacheGeneration = old })
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	var imgs []CatalogImage
	for range 5 {
		imgs = append(imgs, catalogImage(t, tr, w.bundle(bundleOpts{})))
	}
	tr = w.trust() // a fresh cache: catalogImage verified with the first
	for round := range 2 {
		for _, img := range imgs {
			if d := tr.DecideBoot(img, pol, testNow); !d.Allowed {
				t.Fatalf("round %d: %s", round, d.Message)
			}
			if n := tr.records.len(); n > 2*recordCacheGeneration {
				t.Fatalf("the cache holds %d records, bound %d", n, 2*recordCacheGeneration)
			}
		}
	}
	// the image used last-but-two sits in the older generation: using it
	// keeps it
	if _, ok := tr.records.get(recordKey(imgs[3].Properties)); !ok {
		t.Fatal("a record of the older generation was not found")
	}
	if _, ok := tr.records.cur[recordKey(imgs[3].Properties)]; !ok {
		t.Fatal("a record used from the older generation did not move to the current one")
	}
	tampered := imgs[0]
	tampered.Properties = maps.Clone(imgs[0].Properties)
	tampered.Properties[PropImageNotAfter] = "2099-01-01T00:00:00Z"
	if d := tr.DecideBoot(tampered, pol, testNow); d.Allowed || !contains(d.Reasons, DecisionRecordTampered) {
		t.Fatalf("tampered record after eviction: %+v", d)
	}
}

// TestRecordTamperedAgreesWithDecideBoot: RecordTampered, given the verified
// bundle, names exactly the properties for which DecideBoot refuses the
// image as record-tampered (each signed property edited in turn), and none
// for the unsigned ones (validity flags, revocation details) nor for an
// intact record.
func TestRecordTamperedAgreesWithDecideBoot(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	r := tr.Verify(Input{Descriptor: b.desc, Signature: b.sig, Now: testNow})
	pol := BootPolicy{MirrorProject: mirror}
	if got, err := RecordTampered(r, catalogImage(t, tr, b).Properties); err != nil || got != nil {
		t.Fatalf("intact record: %v, %v", got, err)
	}
	for _, k := range signedProps {
		img := catalogImage(t, tr, b)
		img.Properties[k] += "x"
		got, err := RecordTampered(r, img.Properties)
		if err != nil || len(got) != 1 || got[0] != k {
			t.Errorf("%s edited: RecordTampered = %v, %v", k, got, err)
		}
		d := tr.DecideBoot(img, pol, testNow)
		if d.Allowed || !contains(d.Reasons, DecisionRecordTampered) || !strings.Contains(d.Message, k) {
			t.Errorf("%s edited: DecideBoot %v %q", k, d.Reasons, d.Message)
		}
	}
	for _, k := range []string{PropGlobalValidity, PropLocalValidity, PropRevocationReason, PropRecordVersion} {
		img := catalogImage(t, tr, b)
		img.Properties[k] = "edited"
		if got, err := RecordTampered(r, img.Properties); err != nil || got != nil {
			t.Errorf("%s edited: RecordTampered = %v, %v; want none", k, got, err)
		}
	}
	if _, err := RecordTampered(&Result{}, nil); err == nil {
		t.Error("a Result not fully verified gave no error")
	}
}
