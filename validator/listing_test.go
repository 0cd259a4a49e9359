package validator

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

const (
	uuidA = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
	uuidB = "1b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
)

const goodListing = `{"version":1,"vo":"atlas","serial":7,"issued":"2026-06-01T11:00:00Z","expires":"2026-06-08T11:00:00Z","images":["` + uuidA + `","` + uuidB + `"]}`

// TestParseListing: the strict form of docs/formats.md, "VO listing": each
// "fail" case is refused as listing-invalid, naming what is wrong.
func TestParseListing(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(goodListing, old, new, 1) }
	for name, c := range map[string]struct{ doc, want string }{
		"ok listing":                       {goodListing, ""},
		"ok empty images":                  {repl(`["`+uuidA+`","`+uuidB+`"]`, `[]`), ""},
		"ok whitespace":                    {" \n" + goodListing + "\n", ""},
		"fail empty":                       {"", "empty"},
		"fail not an object":               {"[]", "cannot unmarshal"},
		"fail unknown key":                 {repl(`"version":1`, `"version":1,"extra":1`), "unknown field"},
		"fail key in other case":           {repl(`"vo":`, `"VO":`), "unknown field"},
		"fail duplicate key":               {repl(`"version":1`, `"version":1,"version":1`), "duplicate"},
		"fail trailing data":               {goodListing + "{}", "trailing data"},
		"fail missing images":              {repl(`,"images":["`+uuidA+`","`+uuidB+`"]`, ``), "images is missing"},
		"fail null images":                 {repl(`["`+uuidA+`","`+uuidB+`"]`, `null`), "must be an array"},
		"fail version 2":                   {repl(`"version":1`, `"version":2`), "version 2"},
		"fail bad vo":                      {repl(`"atlas"`, `"at las"`), "field vo"},
		"fail zero serial":                 {repl(`"serial":7`, `"serial":0`), "serial"},
		"fail negative serial":             {repl(`"serial":7`, `"serial":-1`), "serial"},
		"fail fractional serial":           {repl(`"serial":7`, `"serial":7.5`), "serial"},
		"fail issued not rfc3339":          {repl(`2026-06-01T11:00:00Z`, `2026-06-01 11:00`), "issued"},
		"fail expires not rfc3339":         {repl(`2026-06-08T11:00:00Z`, `next week`), "expires"},
		"fail expires before issued":       {repl(`2026-06-08T11:00:00Z`, `2026-05-01T11:00:00Z`), "not after issued"},
		"ok expires 90 days after issued":  {repl(`2026-06-08T11:00:00Z`, `2026-08-30T11:00:00Z`), ""},
		"fail expires over 90 days after":  {repl(`2026-06-08T11:00:00Z`, `2026-08-30T11:00:01Z`), "more than 90 days"},
		"fail upper-case uuid":             {repl(uuidA, strings.ToUpper(uuidA)), "canonical"},
		"fail uuid in braces":              {repl(uuidA, "{"+uuidA+"}"), "canonical"},
		"fail uuid twice":                  {repl(uuidB, uuidA), "listed twice"},
		"fail invalid utf-8":               {repl(`"atlas"`, "\"atl\xffas\""), "UTF-8"},
		"fail too large":                   {goodListing + strings.Repeat(" ", MaxListingSize), "more than"},
		"fail images not strings":          {repl(`["`+uuidA+`","`+uuidB+`"]`, `[1]`), "cannot unmarshal"},
		"fail string serial":               {repl(`"serial":7`, `"serial":"7"`), "cannot unmarshal"},
		"fail duplicate key in other case": {repl(`"serial":7`, `"serial":7,"Serial":8`), "unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := ParseListing([]byte(c.doc))
			if strings.HasPrefix(name, "ok") {
				if err != nil {
					t.Fatal(err)
				}
				if l.VO != "atlas" || l.Serial != 7 || l.Digest == "" || l.ExpiresTime.IsZero() {
					t.Fatalf("parsed %+v", l)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if ListingReason(err) != ListingInvalid || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q (reason %s), want listing-invalid naming %q", err, ListingReason(err), c.want)
			}
		})
	}
}

func FuzzParseListing(f *testing.F) {
	f.Add([]byte(goodListing))
	f.Add([]byte(`{"version":1,"vo":"x","serial":1,"issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","images":[]}`))
	f.Add([]byte(`{"version":1,"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseListing(b)
		if err != nil {
			if ListingReason(err) != ListingInvalid {
				t.Fatalf("parse error of reason %s", ListingReason(err))
			}
			return
		}
		if l.Version != 1 || l.Serial == 0 || !l.ExpiresTime.After(l.IssuedTime) || l.Images == nil || len(l.Digest) != 64 {
			t.Fatalf("accepted an invalid listing: %+v", l)
		}
		seen := map[string]bool{}
		for _, u := range l.Images {
			if !canonicalUUID.MatchString(u) || seen[u] {
				t.Fatalf("accepted uuid %q", u)
			}
			seen[u] = true
		}
		// what is accepted reads back the same
		b2, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if l2, err := ParseListing(b2); err != nil || l2.Serial != l.Serial || len(l2.Images) != len(l.Images) {
			t.Fatalf("re-encoded listing refused: %v", err)
		}
	})
}

// signListing signs doc with leaf (its chain embedded).
func signListing(t *testing.T, doc []byte, leaf *testpki.Leaf) []byte {
	t.Helper()
	sig, err := cms.Sign(doc, leaf.Cert, leaf.Key, cms.SignOptions{Chain: leaf.Chain, SigningTime: testNow})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestVerifyListing: a listing is accepted only when signed, alone, by a
// listing signer of its VO who chains to a people CA, now, unrevoked, and
// only between issued and expires; every refusal has its named reason.
func TestVerifyListing(t *testing.T) {
	w := newWorld(t)
	doc := []byte(goodListing)
	valid := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	expiredSigner := w.peopleSub.Leaf(testpki.Name("Bob Approver"), testpki.WithValidity(testNow.AddDate(-1, 0, 0), testNow.AddDate(0, 0, -1)))
	registrar := w.regRoot.Leaf(testpki.Name("Bob Approver"), valid)
	caSigner := w.peopleSub.Leaf(testpki.Name("Bob Approver"), valid, testpki.WithKeyUsage(x509.KeyUsageKeyEncipherment))
	twoSigners, err := cms.AddSigner(signListing(t, doc, w.approver), doc, w.creator.Cert, w.creator.Key, cms.SignOptions{SigningTime: testNow})
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(goodListing, `"serial":7`, `"serial":8`, 1))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	for name, c := range map[string]struct {
		doc, sig []byte
		vo       string
		now      time.Time
		trust    func() *Trust
		want     string
	}{
		"ok by an approver":                    {doc: doc, sig: signListing(t, doc, w.approver)},
		"ok just before expiry":                {doc: doc, sig: signListing(t, doc, w.approver), now: time.Date(2026, 6, 8, 10, 59, 59, 0, time.UTC)},
		"fail by a creator":                    {doc: doc, sig: signListing(t, doc, w.creator), want: ListingSignerNotListed},
		"fail tampered":                        {doc: tampered, sig: signListing(t, doc, w.approver), want: ListingBadSignature},
		"fail not cms":                         {doc: doc, sig: []byte("not a signature"), want: ListingCMSInvalid},
		"fail two signers":                     {doc: doc, sig: twoSigners, want: ListingExtraSigner},
		"fail read as another vo":              {doc: doc, sig: signListing(t, doc, w.approver), vo: "cms", want: ListingWrongVO},
		"fail unknown vo":                      {doc: []byte(strings.Replace(goodListing, "atlas", "lhcb", 1)), vo: "lhcb", want: ListingUnknownVO},
		"fail expired":                         {doc: doc, sig: signListing(t, doc, w.approver), now: time.Date(2026, 6, 8, 11, 0, 0, 0, time.UTC), want: ListingExpired},
		"fail issued in the future":            {doc: doc, sig: signListing(t, doc, w.approver), now: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC), want: ListingNotYetValid},
		"fail signer expired now":              {doc: doc, sig: signListing(t, doc, expiredSigner), want: ListingSignerUntrusted},
		"fail signer of a registrar ca":        {doc: doc, sig: signListing(t, doc, registrar), want: ListingSignerUntrusted},
		"fail signer without signing use":      {doc: doc, sig: signListing(t, doc, caSigner), want: ListingSignerUntrusted},
		"fail invalid document":                {doc: []byte(`{}`), sig: signListing(t, []byte(`{}`), w.approver), want: ListingInvalid},
		"fail approver not listing signer":     {doc: doc, sig: signListing(t, doc, w.approver), want: ListingSignerNotListed, trust: func() *Trust { return w.trustListing(cdn) }},
		"ok listing signers replace approvers": {doc: doc, sig: signListing(t, doc, w.creator), trust: func() *Trust { return w.trustListing(cdn) }},
		"fail signer revoked": {doc: doc, sig: signListing(t, doc, w.approver), want: ListingRevoked, trust: func() *Trust {
			w.crls = [][]byte{revokeCRL(w.peopleSub, 3, pki.Revoked{Serial: w.approver.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -2), Reason: 4})}
			defer func() { w.crls = nil }()
			return w.trust()
		}},
	} {
		t.Run(name, func(t *testing.T) {
			vo, now, tr := c.vo, c.now, w.trust()
			if vo == "" {
				vo = "atlas"
			}
			if now.IsZero() {
				now = testNow
			}
			if c.trust != nil {
				tr = c.trust()
			}
			l, err := tr.VerifyListing(c.doc, c.sig, vo, now)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !l.Has(uuidA) || l.Has("2b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f") || l.Signer == "" {
					t.Fatalf("listing %+v", l)
				}
				return
			}
			var lf *ListingFailure
			if !errors.As(err, &lf) || lf.Reason != c.want {
				t.Fatalf("error %v, want reason %s", err, c.want)
			}
		})
	}
}

// trustListing is the world's trust with atlas's listing signers set.
func (w *world) trustListing(signers ...DN) *Trust {
	tr := w.trust()
	tr.vos["atlas"].ListingSigners = signers
	return tr
}

// TestCheckListingSerial: a host refuses a serial lower than it accepted,
// and the same serial with other contents; a higher one, or the same
// document again, passes.
func TestCheckListingSerial(t *testing.T) {
	l, err := ParseListing([]byte(goodListing))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		base ListingBaseline
		want string
	}{
		"ok no baseline":          {ListingBaseline{}, ""},
		"ok higher serial":        {ListingBaseline{Serial: 6, Digest: "x"}, ""},
		"ok the same document":    {ListingBaseline{Serial: 7, Digest: l.Digest}, ""},
		"fail lower serial":       {ListingBaseline{Serial: 8, Digest: l.Digest}, ListingRolledBack},
		"fail same serial, other": {ListingBaseline{Serial: 7, Digest: "other"}, ListingSerialReused},
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckListingSerial(l, c.base)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if ListingReason(err) != c.want {
				t.Fatalf("error %v, want %s", err, c.want)
			}
		})
	}
}

// TestListingHas: Has answers from the parsed set and, for a Listing made
// without ParseListing, by scanning Images; both agree.
func TestListingHas(t *testing.T) {
	l, err := ParseListing([]byte(goodListing))
	if err != nil {
		t.Fatal(err)
	}
	bare := &Listing{Images: l.Images}
	for _, c := range []struct {
		uuid string
		want bool
	}{{uuidA, true}, {uuidB, true}, {"00000000-0000-4000-8000-000000000000", false}, {"", false}} {
		if got := l.Has(c.uuid); got != c.want {
			t.Errorf("parsed Has(%q) = %v", c.uuid, got)
		}
		if got := bare.Has(c.uuid); got != c.want {
			t.Errorf("bare Has(%q) = %v", c.uuid, got)
		}
	}
}

// BenchmarkListingHas: one lookup in a listing of 20 000 images, against
// the scan it replaced (same run: compare the two as a ratio).
func BenchmarkListingHas(b *testing.B) {
	var doc strings.Builder
	doc.WriteString(`{"version":1,"vo":"atlas","serial":7,"issued":"2026-06-01T11:00:00Z","expires":"2026-06-08T11:00:00Z","images":[`)
	for i := range 20000 {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `"%08x-0000-4000-8000-000000000000"`, i)
	}
	doc.WriteString("]}")
	l, err := ParseListing([]byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	last := fmt.Sprintf("%08x-0000-4000-8000-000000000000", 19999)
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			if !l.Has(last) {
				b.Fatal("not found")
			}
		}
	})
	bare := &Listing{Images: l.Images}
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if !bare.Has(last) {
				b.Fatal("not found")
			}
		}
	})
}

// TestListingSignersFromConfig: [vo.NAME] listing_signers, read from the
// TOML configuration (LoadTrust), replaces the VO's approvers as the
// listing signers; a DN that does not parse is refused at load, naming
// the key.
func TestListingSignersFromConfig(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	people := testpki.WriteFile(t, dir, "people.pem", append(testpki.CertPEM(w.peopleRoot.Cert), testpki.CertPEM(w.peopleSub.Cert)...))
	reg := testpki.WriteFile(t, dir, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	load := func(signers string) (*Trust, error) {
		cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_files = [%q]\nregistrar_ca_files = [%q]\n[vo.atlas]\ncreators = [%q]\napprovers = [%q]\nlisting = \"signed\"\n%s",
			people, reg, cdn.OneLine(), adn.OneLine(), signers)))
		if err != nil {
			return nil, err
		}
		tr, _, err := LoadTrust(cfg)
		return tr, err
	}
	doc := []byte(goodListing)
	for _, c := range []struct {
		name    string
		signers string
		by      *testpki.Leaf
		want    string
	}{
		{"ok default: an approver", "", w.approver, ""},
		{"fail default: a creator", "", w.creator, ListingSignerNotListed},
		{"ok listing_signers names the creator", fmt.Sprintf("listing_signers = [%q]\n", cdn.OneLine()), w.creator, ""},
		{"fail listing_signers leaves the approver out", fmt.Sprintf("listing_signers = [%q]\n", cdn.OneLine()), w.approver, ListingSignerNotListed},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := load(c.signers)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tr.VerifyListing(doc, signListing(t, doc, c.by), "atlas", testNow)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if ListingReason(err) != c.want {
				t.Fatalf("error %v, want reason %s", err, c.want)
			}
		})
	}
	if _, err := load("listing_signers = [\"not a DN\"]\n"); err == nil || !strings.Contains(err.Error(), "vo.atlas.listing_signers") {
		t.Fatalf("fail a DN that does not parse: error %v, want one naming vo.atlas.listing_signers", err)
	}
}
