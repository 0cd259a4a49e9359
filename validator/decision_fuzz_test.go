package validator

import (
	"bytes"
	"maps"
	"slices"
	"testing"
	"time"
)

// recordPropNames are every property a record or its flags use, for the
// fuzzer to pick from.
var recordPropNames = append(slices.Clone(signedProps),
	PropRecordVersion, PropDescriptor, PropSignature, PropGlobalValidity, PropLocalValidity,
	PropRevocationReason, PropRevocationDate, PropRevokedRole, PropAlias)

// FuzzDecideBoot edits a genuine catalogue record (any property set to any
// value, deleted, or taken from another genuine record; any status; any
// time) and holds DecideBoot to what may boot: nothing but the genuine
// record's own bytes and signed properties, globally valid, not
// blacklisted, active, and within its validity (or expired and run-anyway).
// The same decision asked twice (the second from the record cache) agrees.
func FuzzDecideBoot(f *testing.F) {
	w := newWorld(f)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	o := w.bundle(bundleOpts{vo: "cms"})
	genuine, err := RecordProperties(tr.Verify(b.input(testNow)), b.desc, b.sig)
	if err != nil {
		f.Fatal(err)
	}
	other, err := RecordProperties(tr.Verify(o.input(testNow)), o.desc, o.sig)
	if err != nil {
		f.Fatal(err)
	}
	pol := BootPolicy{MirrorProject: mirror}
	f.Add(uint8(0), "", uint8(0), "", "active", int32(0), uint8(0))
	f.Add(uint8(len(signedProps)+3), GlobalRevoked, uint8(len(signedProps)+4), LocalRunAnyway, "active", int32(24*200), uint8(0))
	f.Add(uint8(len(signedProps)+4), LocalRunAnyway, uint8(0), "\x00", "active", int32(24*200), uint8(0))
	f.Add(uint8(len(signedProps)+4), LocalBlacklist, uint8(0), "\x00", "active", int32(0), uint8(0))
	f.Add(uint8(10), "2099-01-01T00:00:00Z", uint8(0), "\x00", "active", int32(24*200), uint8(0))
	f.Add(uint8(0), "\x00", uint8(0), "\x00", "active", int32(0), uint8(len(signedProps)+2))
	f.Add(uint8(len(signedProps)+1), genuine[PropDescriptor]+"\n", uint8(0), "\x00", "active", int32(0), uint8(0))
	f.Fuzz(func(t *testing.T, k1 uint8, v1 string, k2 uint8, v2 string, status string, hours int32, from uint8) {
		props := maps.Clone(genuine)
		// from > 0: one property taken from the other genuine record
		if from > 0 {
			k := recordPropNames[int(from)%len(recordPropNames)]
			if v, ok := other[k]; ok {
				props[k] = v
			}
		}
		for _, kv := range []struct {
			k uint8
			v string
		}{{k1, v1}, {k2, v2}} {
			name := recordPropNames[int(kv.k)%len(recordPropNames)]
			switch kv.v {
			case "\x00": // unchanged
			case "\x00delete":
				delete(props, name)
			default:
				props[name] = kv.v
			}
		}
		img := CatalogImage{ID: b.d.UUID, Owner: mirror, Status: status, Properties: props}
		now := testNow.Add(time.Duration(hours) * time.Hour)
		d := tr.DecideBoot(img, pol, now)
		again := tr.DecideBoot(img, pol, now)
		if d.Allowed != again.Allowed || !slices.Equal(d.Reasons, again.Reasons) || d.Message != again.Message {
			t.Fatalf("the cached decision differs: %+v, then %+v", d, again)
		}
		if !d.Allowed {
			if d.Message == "" || len(d.Reasons) == 0 {
				t.Fatalf("a refusal without reasons or message: %+v", d)
			}
			return
		}
		desc, sig, err := RecordBundle(props)
		if err != nil || !bytes.Equal(desc, b.desc) || !bytes.Equal(sig, b.sig) {
			t.Fatalf("allowed a record whose bytes are not the genuine ones (%v)", err)
		}
		for _, k := range signedProps {
			if props[k] != genuine[k] {
				t.Fatalf("allowed with %s = %q, signed %q", k, props[k], genuine[k])
			}
		}
		if props[PropGlobalValidity] != GlobalValid || LocalBlocks(props[PropLocalValidity]) || status != "active" {
			t.Fatalf("allowed with global %q, local %q, status %q", props[PropGlobalValidity], props[PropLocalValidity], status)
		}
		notBefore, _ := time.Parse(time.RFC3339, genuine[PropImageNotBefore])
		notAfter, _ := time.Parse(time.RFC3339, genuine[PropImageNotAfter])
		if now.Before(notBefore) || now.After(notAfter) && props[PropLocalValidity] != LocalRunAnyway {
			t.Fatalf("allowed at %s, outside %s..%s with local %q", now, notBefore, notAfter, props[PropLocalValidity])
		}
	})
}
