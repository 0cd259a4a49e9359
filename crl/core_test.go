package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func reasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err == nil {
		return ""
	}
	return "not-an-Error: " + err.Error()
}

func TestDecode(t *testing.T) {
	root := testpki.NewRoot(t, "Decode Root")
	der := root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0})
	pemCRL := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	tests := []struct {
		name   string
		in     []byte
		reason string
	}{
		{"ok DER", der, ""},
		{"ok PEM", pemCRL, ""},
		{"ok PEM with surrounding blanks", append(append([]byte("\n  "), pemCRL...), '\n'), ""},
		{"fail empty", nil, ReasonParse},
		{"fail garbage", []byte("this is not a CRL at all"), ReasonParse},
		{"fail truncated", der[:len(der)-10], ReasonParse},
		{"fail trailing data", append(append([]byte{}, der...), 0, 0), ReasonParse},
		{"fail two PEM blocks", append(append([]byte{}, pemCRL...), pemCRL...), ReasonParse},
		{"fail PEM certificate", testpki.CertPEM(root.Cert), ReasonParse},
		{"fail broken PEM", []byte("-----BEGIN X509 CRL-----\nnot base64\n"), ReasonParse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.in)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("Decode: reason %q, want %q (err %v)", got, tc.reason, err)
			}
			_, err = Parse(tc.in)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("Parse: reason %q, want %q (err %v)", got, tc.reason, err)
			}
			_, err = ParseList(tc.in)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("ParseList: reason %q, want %q (err %v)", got, tc.reason, err)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	b := make([]byte, MaxSize+1)
	if _, err := Decode(b); reasonOf(err) != ReasonParse {
		t.Fatalf("Decode of %d bytes: %v", len(b), err)
	}
}

// TestListMatchesStdlib checks that the compact list finds exactly the
// entries the standard library parses, with the same fields.
func TestListMatchesStdlib(t *testing.T) {
	root := testpki.NewRoot(t, "List Root")
	var ents []pki.Revoked
	for i := int64(0); i < 300; i++ {
		ents = append(ents, pki.Revoked{Serial: big.NewInt(i*i*7919 + 1), Time: t0.Add(-time.Duration(i) * time.Hour), Reason: int(i % 7)})
	}
	big1 := new(big.Int).Lsh(big.NewInt(1), 159)
	ents = append(ents, pki.Revoked{Serial: big1, Time: t0, Reason: -1}, pki.Revoked{Serial: big.NewInt(128), Time: t0.AddDate(60, 0, 0), Reason: 8})
	der := root.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0, Entries: ents})
	std, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseList(der)
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != len(std.RevokedCertificateEntries) {
		t.Fatalf("Len %d, want %d", l.Len(), len(std.RevokedCertificateEntries))
	}
	if len(l.Header.RevokedCertificateEntries) != 0 || l.Header.Number.Int64() != 5 || !l.Header.ThisUpdate.Equal(t0) {
		t.Fatalf("header: %+v", l.Header)
	}
	if err := l.Header.CheckSignatureFrom(root.Cert); err != nil {
		t.Fatalf("header signature: %v", err)
	}
	for _, want := range std.RevokedCertificateEntries {
		got, ok := l.Find(want.SerialNumber)
		if !ok {
			t.Fatalf("serial %x not found", want.SerialNumber)
		}
		if got.SerialNumber.Cmp(want.SerialNumber) != 0 || !got.RevocationTime.Equal(want.RevocationTime) ||
			got.ReasonCode != want.ReasonCode || !bytes.Equal(got.Raw, want.Raw) || len(got.Extensions) != len(want.Extensions) {
			t.Fatalf("entry %x: got %+v, want %+v", want.SerialNumber, got, want)
		}
	}
	for _, s := range []int64{0, 2, 3, 127, 129, -1} {
		if _, ok := l.Find(big.NewInt(s)); ok {
			t.Fatalf("serial %d found, not in the CRL", s)
		}
	}
}

// notCRLSigner is the same CA (name and key) certified without cRLSign.
// With isCA false it is certified as an end entity.
func notCRLSigner(t *testing.T, ca *testpki.CA, isCA bool) *x509.Certificate {
	t.Helper()
	ku := x509.KeyUsageCertSign
	if !isCA {
		ku = x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	c, err := pki.Issue(pki.Template{Subject: ca.Cert.Subject, IsCA: isCA, MaxPathLen: -1, KeyUsage: ku,
		NotBefore: ca.Cert.NotBefore, NotAfter: ca.Cert.NotAfter}, ca.Key.Public(), ca.Parent.Cert, ca.Parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerify(t *testing.T) {
	root := testpki.NewRoot(t, "Verify Root")
	ca := root.Intermediate("Verify CA")
	other := root.Intermediate("Other CA")
	twin := testpki.NewRoot(t, "Verify CA") // same name, other key
	good := ca.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: t0})
	badSig := append([]byte{}, good...)
	badSig[len(badSig)-5] ^= 0x55
	delta := ca.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: t0, DeltaOf: 2})
	tests := []struct {
		name   string
		der    []byte
		ca     *x509.Certificate
		reason string
	}{
		{"ok signed by its CA", good, ca.Cert, ""},
		{"fail wrong issuer", good, other.Cert, ReasonWrongIssuer},
		{"fail same name other key", good, twin.Cert, ReasonWrongIssuer},
		{"fail bad signature", badSig, ca.Cert, ReasonSignature},
		{"fail not a CRL signer", good, notCRLSigner(t, ca, true), ReasonNotCRLSigner},
		{"fail not a CA", good, notCRLSigner(t, ca, false), ReasonNotCRLSigner},
		{"fail no CA", good, nil, ReasonWrongIssuer},
		{"fail delta CRL", delta, ca.Cert, ReasonDelta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseList(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			if got := reasonOf(Verify(l.Header, tc.ca)); got != tc.reason {
				t.Fatalf("reason %q, want %q", got, tc.reason)
			}
			rl, err := Parse(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			if got := reasonOf(Verify(rl, tc.ca)); got != tc.reason {
				t.Fatalf("stdlib form: reason %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestIndexAdd(t *testing.T) {
	root := testpki.NewRoot(t, "Add Root")
	ca := root.Intermediate("Add CA")
	ix := &Index{ClockSkew: 5 * time.Minute}
	add := func(n int64, tu time.Time, entries ...pki.Revoked) error {
		l, err := ParseList(ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: tu, Entries: entries}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ix.AddList(l, ca.Cert, t0, "test")
		return err
	}
	steps := []struct {
		name   string
		err    error
		reason string
	}{
		{"ok first", add(10, t0.Add(-time.Hour)), ""},
		{"ok thisUpdate within clock skew", add(11, t0.Add(4*time.Minute)), ""},
		{"fail thisUpdate in the future", add(12, t0.Add(6*time.Minute)), ReasonFuture},
		{"fail rollback", add(9, t0.Add(-time.Minute)), ReasonRollback},
		{"fail same number other content", add(11, t0.Add(-time.Minute), pki.Revoked{Serial: big.NewInt(1)}), ReasonRollback},
		{"ok higher number", add(13, t0, pki.Revoked{Serial: big.NewInt(7), Reason: 1}), ""},
	}
	for _, s := range steps {
		if got := reasonOf(s.err); got != s.reason {
			t.Errorf("%s: reason %q, want %q (%v)", s.name, got, s.reason, s.err)
		}
	}
	if n := len(ix.CRLs()); n != 1 {
		t.Fatalf("%d CRLs in the index, want 1 (newest replaces older)", n)
	}
	if _, rl, ok := ix.Lookup(ca.Cert.RawSubject, big.NewInt(7)); !ok || rl.Number.Int64() != 13 {
		t.Fatalf("serial 7 not revoked by CRL 13")
	}
	if !ix.HasCRL(ca.Cert.RawSubject) || ix.HasCRL(root.Cert.RawSubject) {
		t.Fatal("HasCRL")
	}
}

func TestCheckChain(t *testing.T) {
	root := testpki.NewRoot(t, "Chain Root")
	people := root.Intermediate("People CA")
	other := root.Intermediate("Other People CA")
	creator := people.Leaf(testpki.Name("Creator"), testpki.WithSerial(1001))
	image := people.Leaf(testpki.Name("Image"), testpki.WithSerial(1002))
	reg := t0.Add(-30 * 24 * time.Hour)
	before, after := reg.Add(-time.Hour), reg.Add(time.Hour)
	chainOf := func(l *testpki.Leaf) []*x509.Certificate {
		return append([]*x509.Certificate{l.Cert}, append(l.Chain, root.Cert)...)
	}
	tests := []struct {
		name    string
		issuer  *testpki.CA // who issues the CRL
		entries []pki.Revoked
		chain   []*x509.Certificate
		role    Role
		strict  bool
		reason  int // -1: no revocation applies
	}{
		{"ok nothing revoked", people, nil, chainOf(creator), RoleCreator, false, -1},
		{"ok affiliationChanged after registration", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonAffiliationChanged}}, chainOf(creator), RoleCreator, false, -1},
		{"ok superseded after registration", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonSuperseded}}, chainOf(creator), RoleCreator, false, -1},
		{"ok removeFromCRL", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: before, Reason: ReasonRemoveFromCRL}}, chainOf(creator), RoleCreator, false, -1},
		{"ok other CA revokes the same serial", other, []pki.Revoked{{Serial: big.NewInt(1001), Time: before, Reason: ReasonKeyCompromise}}, chainOf(creator), RoleCreator, false, -1},
		{"fail affiliationChanged after registration, strict", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonAffiliationChanged}}, chainOf(creator), RoleCreator, true, ReasonAffiliationChanged},
		{"fail affiliationChanged before registration", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: before, Reason: ReasonAffiliationChanged}}, chainOf(creator), RoleCreator, false, ReasonAffiliationChanged},
		{"fail keyCompromise after registration", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonKeyCompromise}}, chainOf(creator), RoleCreator, false, ReasonKeyCompromise},
		{"fail unspecified after registration", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: -1}}, chainOf(creator), RoleCreator, false, ReasonUnspecified},
		{"fail certificateHold", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonCertificateHold}}, chainOf(creator), RoleCreator, false, ReasonCertificateHold},
		{"fail image superseded after registration", people, []pki.Revoked{{Serial: big.NewInt(1002), Time: after, Reason: ReasonSuperseded}}, chainOf(image), RoleImage, false, ReasonSuperseded},
		{"fail intermediate CA revoked", root, []pki.Revoked{{Serial: people.Cert.SerialNumber, Time: before, Reason: ReasonCACompromise}}, chainOf(creator), RoleCreator, false, ReasonCACompromise},
		// a CRL may list a serial twice (another CA tool's history kept
		// beside the new entry): every entry counts, not the first alone
		{"fail keyCompromise listed after a superseded entry of the same serial", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: after, Reason: ReasonSuperseded}, {Serial: big.NewInt(1001), Time: after, Reason: ReasonKeyCompromise}}, chainOf(creator), RoleCreator, false, ReasonKeyCompromise},
		{"fail keyCompromise listed after a removeFromCRL entry of the same serial", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: before, Reason: ReasonRemoveFromCRL}, {Serial: big.NewInt(1001), Time: after, Reason: ReasonKeyCompromise}}, chainOf(creator), RoleCreator, false, ReasonKeyCompromise},
		{"fail keyCompromise listed after a hold of the same serial", people, []pki.Revoked{{Serial: big.NewInt(1001), Time: before, Reason: ReasonCertificateHold}, {Serial: big.NewInt(1001), Time: after, Reason: ReasonKeyCompromise}}, chainOf(creator), RoleCreator, false, ReasonKeyCompromise},
		{"ok intermediate CA superseded after registration", root, []pki.Revoked{{Serial: people.Cert.SerialNumber, Time: after, Reason: ReasonSuperseded}}, chainOf(creator), RoleCreator, false, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := &Index{}
			rl, err := Parse(tc.issuer.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), Entries: tc.entries}))
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.Add(rl, tc.issuer.Cert, t0); err != nil {
				t.Fatal(err)
			}
			rev := ix.CheckChain(tc.chain, tc.role, reg, tc.strict)
			switch {
			case tc.reason < 0 && rev != nil:
				t.Fatalf("revoked: %+v", rev)
			case tc.reason >= 0 && rev == nil:
				t.Fatal("not revoked")
			case rev != nil && (rev.Reason != tc.reason || rev.CRLNumber.Int64() != 1 || rev.Issuer != tc.issuer.Cert.Subject.String()):
				t.Fatalf("revocation %+v, want reason %d", rev, tc.reason)
			}
		})
	}
}

// TestIndexScopes: CRLs of one CA with different issuingDistributionPoints
// (RFC 5280: numbered per issuer and scope) stay side by side, each
// replaced and checked for rollback only by CRLs of its own scope, and a
// lookup consults them all. A CA-only CRL (an ARL) revoking an intermediate
// is not lost to a user-only CRL with a higher number, in either order.
func TestIndexScopes(t *testing.T) {
	root := testpki.NewRoot(t, "Scope Root")
	sub := root.Intermediate("Scope Sub CA")
	leaf := sub.Leaf(testpki.Name("Scope Leaf"))
	arl := func(n int64) *List {
		return mustList(t, root.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), IDP: pki.IDPOnlyCACerts,
			Entries: []pki.Revoked{{Serial: sub.Cert.SerialNumber, Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}}}))
	}
	user := func(n int64) *List {
		return mustList(t, root.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), IDP: pki.IDPOnlyUserCerts}))
	}
	chain := []*x509.Certificate{leaf.Cert, sub.Cert, root.Cert}
	for _, order := range [][]*List{{arl(5), user(6)}, {user(6), arl(5)}} {
		ix := &Index{}
		for _, l := range order {
			if _, err := ix.AddList(l, root.Cert, t0, "test"); err != nil {
				t.Fatalf("add CRL %s: %v", l.Header.Number, err)
			}
		}
		if n := len(ix.CRLs()); n != 2 {
			t.Fatalf("%d CRLs, want 2", n)
		}
		if rev := ix.CheckChain(chain, RoleCreator, t0.Add(-24*time.Hour), false); rev == nil || rev.Role != RoleCA {
			t.Fatalf("revoked intermediate not found: %+v", rev)
		}
		if !ix.HasCRLFor(sub.Cert) || ix.HasCRLFor(leaf.Cert) {
			t.Error("HasCRLFor: the sub CA's issuer has an ARL; the leaf's issuer has no CRL")
		}
	}
	ix := &Index{}
	for _, l := range []*List{user(6), arl(5)} {
		if _, err := ix.AddList(l, root.Cert, t0, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ix.AddList(user(4), root.Cert, t0, "test"); reasonOf(err) != ReasonRollback {
		t.Errorf("user-only CRL 4 after 6: %v, want rollback", err)
	}
	if _, err := ix.AddList(arl(7), root.Cert, t0, "test"); err != nil || len(ix.CRLs()) != 2 {
		t.Errorf("ARL 7 after 5: %v, %d CRLs", err, len(ix.CRLs()))
	}
	// only a CRL whose scope takes the certificate in counts for HasCRLFor
	ix = &Index{}
	if _, err := ix.AddList(mustList(t, sub.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), IDP: pki.IDPOnlyCACerts})), sub.Cert, t0, "test"); err != nil {
		t.Fatal(err)
	}
	if ix.HasCRLFor(leaf.Cert) {
		t.Error("a CA-only CRL counts for an end entity")
	}
}

func mustList(t *testing.T, der []byte) *List {
	t.Helper()
	l, err := ParseList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHoldReleasedInNewerScope: a certificateHold lapses when a newer CRL
// of the CA that speaks for every certificate of its kind does not list it
// (a complete CRL, or a user-only one naming no distribution point), in
// either direction of a change of scope; a revocation proper never lapses.
func TestHoldReleasedInNewerScope(t *testing.T) {
	root := testpki.NewRoot(t, "Hold Root")
	ca := root.Intermediate("Hold CA")
	leaf := ca.Leaf(testpki.Name("Held"), testpki.WithSerial(5))
	chain := []*x509.Certificate{leaf.Cert, ca.Cert, root.Cert}
	list := func(n int64, age time.Duration, idp []byte, reason int) *List {
		var entries []pki.Revoked
		if reason >= 0 {
			entries = []pki.Revoked{{Serial: big.NewInt(5), Time: t0.Add(-3 * time.Hour), Reason: reason}}
		}
		return mustList(t, ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-age), IDP: idp, Entries: entries}))
	}
	for _, tc := range []struct {
		name       string
		older      *List
		newer      *List
		wantReason int // -1: none applies
	}{
		{"ok hold in a user-only CRL, complete CRL after", list(1, 2*time.Hour, pki.IDPOnlyUserCerts, ReasonCertificateHold), list(2, time.Hour, nil, -1), -1},
		{"ok hold in a complete CRL, user-only CRL after", list(1, 2*time.Hour, nil, ReasonCertificateHold), list(2, time.Hour, pki.IDPOnlyUserCerts, -1), -1},
		{"fail hold, a CA-only CRL after", list(1, 2*time.Hour, nil, ReasonCertificateHold), list(2, time.Hour, pki.IDPOnlyCACerts, -1), ReasonCertificateHold},
		// only a later CRL speaks over the hold: one of the same thisUpdate
		// does not (the mutant "!After" -> "Before" in newerSpeaksFor)
		{"fail hold in a user-only CRL, complete CRL of the same thisUpdate", list(1, 2*time.Hour, pki.IDPOnlyUserCerts, ReasonCertificateHold), list(2, 2*time.Hour, nil, -1), ReasonCertificateHold},
		{"fail keyCompromise never lapses", list(1, 2*time.Hour, nil, ReasonKeyCompromise), list(2, time.Hour, pki.IDPOnlyUserCerts, -1), ReasonKeyCompromise},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := &Index{}
			for _, l := range []*List{tc.older, tc.newer} {
				if _, err := ix.AddList(l, ca.Cert, t0, "test"); err != nil {
					t.Fatal(err)
				}
			}
			got := -1
			if rev := ix.CheckChain(chain, RoleCreator, t0.Add(-24*time.Hour), false); rev != nil {
				got = rev.Reason
			}
			if got != tc.wantReason {
				t.Fatalf("reason %d, want %d (-1: none)", got, tc.wantReason)
			}
		})
	}
}

// TestParseListCheckedBeforeEntries: the header check (the job's signature
// check) runs before the entries are indexed, so a CRL that fails it costs
// its bytes and not an index of every entry (a forged CRL of millions of
// entries served over plain http).
func TestParseListCheckedBeforeEntries(t *testing.T) {
	root := testpki.NewRoot(t, "Big CRL Root")
	other := testpki.NewRoot(t, "Big CRL Root") // same name, another key
	entries := make([]pki.Revoked, 50000)
	for i := range entries {
		entries[i] = pki.Revoked{Serial: big.NewInt(int64(i + 1)), Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}
	}
	der := root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), Entries: entries})
	alloc := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	var checked *List
	full := alloc(func() {
		var err error
		if checked, err = ParseListChecked(der, func(h *x509.RevocationList) error { return Verify(h, root.Cert) }); err != nil {
			t.Error(err)
		}
	})
	if checked == nil || checked.Len() != len(entries) {
		t.Fatalf("ok signed by its CA: %v", checked)
	}
	var err error
	refused := alloc(func() {
		_, err = ParseListChecked(der, func(h *x509.RevocationList) error { return Verify(h, other.Cert) })
	})
	if reasonOf(err) != ReasonWrongIssuer {
		t.Fatalf("fail signed by another key: %v", err)
	}
	if refused*10 > full {
		t.Fatalf("a refused CRL allocated %d bytes, the accepted one %d: the entries were indexed before the check", refused, full)
	}
}
