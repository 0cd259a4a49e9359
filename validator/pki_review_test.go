package validator

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestRequireCRLRekeyedCA: a people CA re-keyed under its own name (an
// IGTF rollover: the old and the new certificate both in the trust store,
// both issued by the same root) may publish only the new key's CRL,
// listing the old key's certificates too: RFC 5280 6.3.3 takes a CRL of
// the certificate's issuer name whose signer leads to the same trust
// anchor, and serial numbers are unique per issuer name (4.1.2.2). The
// revocation lookup (crl.Index.Covering) matched the certificate's
// authorityKeyIdentifier to the CRL signer's subjectKeyIdentifier only, so
// a creator issued under the old key and revoked in the new key's CRL
// stayed valid (and, since daa98bc, require_crl refused it for want of a
// CRL). The new key's CRL now speaks for it, in the verifier as in the
// CRL job (crl.Judge on the catalogue record); another root of the same
// name (a namesake outside the certificate's path) still does not.
func TestRequireCRLRekeyedCA(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	rekeyed := w.peopleRoot.Intermediate("People Issuing CA") // same name, new key
	if !bytes.Equal(rekeyed.Cert.RawSubject, w.peopleSub.Cert.RawSubject) {
		t.Fatal("the re-keyed CA has another name")
	}
	twin := testpki.NewRoot(t, "People Issuing CA") // same name, another root
	crlOf := func(ca *testpki.CA, revoked ...pki.Revoked) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), Entries: revoked})
	}
	creatorRevoked := pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, -3, 0), Reason: crl.ReasonKeyCompromise}
	vos := w.trust().vos
	trust := func(crls ...[]byte) *Trust {
		// the trust store holds both certificates of the re-keyed CA
		tr, _, err := NewTrust(TrustOptions{
			People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert, rekeyed.Cert, twin.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: crls, VOs: vos, RequireCRL: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	// the CRL job's verdict on the catalogue record, from the same CRLs
	// (each signed by the CA given with it)
	record, err := RecordProperties(trust(crlOf(w.peopleRoot), crlOf(w.peopleSub), crlOf(w.regRoot)).Verify(b.input(testNow)), b.desc, b.sig)
	if err != nil {
		t.Fatal(err)
	}
	job := func(signed map[*testpki.CA][]byte) string {
		ix := &crl.Index{}
		for ca, der := range signed {
			rl, err := crl.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.Add(rl, ca.Cert, testNow); err != nil {
				t.Fatal(err)
			}
		}
		state, _, _ := crl.Judge(ix, crl.Image{ID: "i", Status: crl.StatusActive, Properties: record}, crl.Policy{RequireCRL: true}, testNow)
		return state
	}
	t.Run("ok only the new key's CRL: it speaks for the old key's certificates", func(t *testing.T) {
		r := trust(crlOf(w.peopleRoot), crlOf(rekeyed), crlOf(w.regRoot)).Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
		}
		if s := job(map[*testpki.CA][]byte{w.peopleRoot: crlOf(w.peopleRoot), rekeyed: crlOf(rekeyed), w.regRoot: crlOf(w.regRoot)}); s != crl.StateValid {
			t.Fatalf("CRL job: %s", s)
		}
	})
	t.Run("fail the new key's CRL revokes a certificate of the old key", func(t *testing.T) {
		r := trust(crlOf(w.peopleRoot), crlOf(rekeyed, creatorRevoked), crlOf(w.regRoot)).Verify(b.input(testNow))
		if r.Valid || r.Revocation == nil || !bytes.Equal(r.Revocation.Cert.Raw, w.creator.Cert.Raw) {
			t.Fatalf("valid %v, revocation %v", r.Valid, r.Revocation)
		}
		if s := job(map[*testpki.CA][]byte{w.peopleRoot: crlOf(w.peopleRoot), rekeyed: crlOf(rekeyed, creatorRevoked), w.regRoot: crlOf(w.regRoot)}); s != crl.StateRevoked {
			t.Fatalf("CRL job: %s", s)
		}
	})
	// the old key's last CRL puts the creator on hold; the new key's CRL,
	// which speaks for the old key's certificates, lifts it when it is
	// later and does not list it (RFC 5280 5.3.1), in the verifier as in
	// the CRL job; an earlier one does not
	held := pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -3), Reason: crl.ReasonCertificateHold}
	oldHold := w.peopleSub.CRL(pki.CRLTemplate{Number: 9, ThisUpdate: testNow.AddDate(0, 0, -2), NextUpdate: testNow.AddDate(0, 0, 7), Entries: []pki.Revoked{held}})
	// an issuingDistributionPoint naming one distribution point: such a
	// CRL speaks for the certificates of that point only
	onePoint := pki.IDPDistributionPoint("http://crl.example/a.crl")
	for _, c := range []struct {
		name  string
		at    time.Time
		idp   []byte
		valid bool
	}{
		{"ok the new key's later CRL lifts the old key's hold", testNow.AddDate(0, 0, -1), nil, true},
		{"fail the new key's earlier CRL leaves the old key's hold", testNow.AddDate(0, 0, -3), nil, false},
		{"fail the new key's later CRL of one distribution point leaves the old key's hold", testNow.AddDate(0, 0, -1), onePoint, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			newer := rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: c.at, NextUpdate: testNow.AddDate(0, 0, 7), IDP: c.idp})
			r := trust(crlOf(w.peopleRoot), oldHold, newer, crlOf(w.regRoot)).Verify(b.input(testNow))
			if r.Valid != c.valid || !c.valid && (r.Revocation == nil || r.Revocation.Reason != crl.ReasonCertificateHold) {
				t.Fatalf("valid %v, revocation %v", r.Valid, r.Revocation)
			}
			want := crl.StateHold
			if c.valid {
				want = crl.StateValid
			}
			if s := job(map[*testpki.CA][]byte{w.peopleRoot: crlOf(w.peopleRoot), w.peopleSub: oldHold, rekeyed: newer, w.regRoot: crlOf(w.regRoot)}); s != want {
				t.Fatalf("CRL job: %s", s)
			}
		})
	}
	// the trust store holds the new key only (the old key's certificate
	// left the bundle, as an expired one does), the signatures still carry
	// the old one: the old key's CRL is kept for the chains it signs
	// (chainIndex), and the new key's later CRL, of the trust store, still
	// lifts its hold, as the CRL job lifts it from the same CRLs
	t.Run("ok the new key's later CRL lifts the hold of the old key's CRL, the old key only embedded", func(t *testing.T) {
		newer := rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
		tr, _, err := NewTrust(TrustOptions{
			People: []*x509.Certificate{w.peopleRoot.Cert, rekeyed.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: [][]byte{crlOf(w.peopleRoot), oldHold, newer, crlOf(w.regRoot)}, VOs: vos, RequireCRL: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := tr.Verify(b.input(testNow)); !r.Valid {
			t.Fatalf("verifier: %v", r.Err())
		}
		if s := job(map[*testpki.CA][]byte{w.peopleRoot: crlOf(w.peopleRoot), w.peopleSub: oldHold, rekeyed: newer, w.regRoot: crlOf(w.regRoot)}); s != crl.StateValid {
			t.Fatalf("CRL job: %s", s)
		}
	})
	t.Run("ok the old key's CRL", func(t *testing.T) {
		r := trust(crlOf(w.peopleRoot), crlOf(w.peopleSub), crlOf(w.regRoot)).Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
		}
	})
	t.Run("fail only a CRL of a namesake under another root", func(t *testing.T) {
		r := trust(crlOf(w.peopleRoot), crlOf(twin, creatorRevoked), crlOf(w.regRoot)).Verify(b.input(testNow))
		if r.Valid || r.Revocation != nil || r.Check(CheckRevocation).Reason != ReasonRevocationUnknown || !strings.Contains(r.Check(CheckRevocation).Detail, "no CRL loaded") {
			t.Fatalf("valid %v, revocation %v, check %+v", r.Valid, r.Revocation, r.Check(CheckRevocation))
		}
		if s := job(map[*testpki.CA][]byte{w.peopleRoot: crlOf(w.peopleRoot), twin: crlOf(twin, creatorRevoked), w.regRoot: crlOf(w.regRoot)}); s != crl.StateUnknown {
			t.Fatalf("CRL job: %s", s)
		}
	})
}

// TestRevokedLinkCertificate: a CA rolling its key over under its own
// name certifies the new key with a self-issued "link" certificate signed
// by the old key (RFC 4210 NewWithOld), and the signatures carry it: the
// chain is leaf, link certificate, old root. RFC 5280 6.1.3 checks every
// certificate of a path but the trust anchor for revocation, self-issued
// ones included: when the old root revokes the link certificate (the new
// key compromised), what the new key issued is refused, by the verifier
// as by the CRL job (whose imagetrust_chain lists the link certificate).
func TestRevokedLinkCertificate(t *testing.T) {
	w := newWorld(t)
	newKey := testpki.NewRoot(t, "", testpki.WithSubject(w.peopleRoot.Cert.Subject))
	link := w.peopleRoot.CrossSign(newKey) // subject and issuer: the root's name
	if !bytes.Equal(link.Cert.RawIssuer, link.Cert.RawSubject) {
		t.Fatal("the link certificate is not self-issued")
	}
	v := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	w.creator = link.Leaf(testpki.Name("Alice Creator"), v)
	w.approver = link.Leaf(testpki.Name("Bob Approver"), v)
	b := w.bundle(bundleOpts{})
	w.rootsOnly = true
	r := w.trust().Verify(b.input(testNow))
	if !r.Valid {
		t.Fatalf("through the link certificate: %v", r.Err())
	}
	if ch := r.Creator.Chain[0]; len(ch) != 3 || !bytes.Equal(ch[1].Raw, link.Cert.Raw) {
		t.Fatalf("creator chain of %d certificates, not leaf, link, root", len(ch))
	}
	w.crls = [][]byte{revokeCRL(w.peopleRoot, 2, pki.Revoked{Serial: link.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonCACompromise})}
	r = w.trust().Verify(b.input(testNow))
	if r.Valid || r.Revocation == nil || r.Revocation.Cert.SerialNumber.Cmp(link.Cert.SerialNumber) != 0 {
		t.Fatalf("valid %v, revocation %v", r.Valid, r.Revocation)
	}
}

// TestNamespaceSubCANamedAsAnotherCA: a constrained CA may issue a sub-CA
// whose name falls within its namespace; when that name is the name of
// another configured CA, with its own wider policy, the sub-CA is still
// not that CA (another key) and stays held to its issuer's namespace: a
// policy file is bound to the CA of the trust store it was written for,
// not to whoever bears its name. Otherwise a CA whose namespace holds
// another CA's name ("/O=Grid/.*" holds "/O=Grid/CN=Science CA") would
// issue any name of that CA's namespace.
func TestNamespaceSubCANamedAsAnotherCA(t *testing.T) {
	w := newWorld(t)
	valid := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	name := func(o, cn string) pkix.Name { return pkix.Name{Organization: []string{o}, CommonName: cn} }
	grid := testpki.NewRoot(t, "", testpki.WithSubject(name("Grid", "Grid Root")))
	science := testpki.NewRoot(t, "", testpki.WithSubject(name("Grid", "Science CA")))
	impostor := grid.Intermediate("", testpki.WithSubject(name("Grid", "Science CA"))) // science's name, grid's chain
	ns := namespacesOf(t, `TO Issuer "/O=Grid/CN=Grid Root" PERMIT Subject "/O=Grid/.*"
TO Issuer "/O=Grid/CN=Science CA" PERMIT Subject "/O=Science/.*"
`)
	alice, _ := ParseDN("/O=Science/CN=Alice")
	bob, _ := ParseDN("/O=Grid/CN=Bob")
	tr, _, err := NewTrust(TrustOptions{
		People:     []*x509.Certificate{grid.Cert, science.Cert},
		Registrar:  []*x509.Certificate{w.regRoot.Cert},
		VOs:        map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{alice}, Approvers: []DN{bob}}},
		Namespaces: ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	approver := grid.Leaf(name("Grid", "Bob"), valid)
	runCreatorCases(t, tr, w, approver, []creatorCase{
		{"ok the Science CA issues a name of its namespace", science.Leaf(name("Science", "Alice"), valid), ""},
		{"fail the Science CA's namesake, the Grid Root's sub-CA, issues a name of the Science CA's namespace", impostor.Leaf(name("Science", "Alice"), valid), ReasonOutsideNamespace},
		{"fail the Grid Root's sub-CA issues a name of the Grid Root's namespace (not listed)", impostor.Leaf(name("Grid", "Carol"), valid), ReasonCreatorNotListed},
	})
}

// TestOneLineRoundTrip: the one-line form names one DN. A value ending in
// a backslash printed unescaped ran into the "/" before the next RDN, so
// OU="a\" then CN="b" printed as OU="a/CN=b" does ("/OU=a\/CN=b"): the
// namespace patterns judged the two as one, and the printed name, copied
// into a VO's list, authorised the other DN.
func TestOneLineRoundTrip(t *testing.T) {
	ou, cn := asn1.ObjectIdentifier{2, 5, 4, 11}, asn1.ObjectIdentifier{2, 5, 4, 3}
	dns := []DN{
		{{{Type: ou, Value: `a\`}}, {{Type: cn, Value: "b"}}},
		{{{Type: ou, Value: `a/CN=b`}}},
		{{{Type: ou, Value: `a\/CN=b`}}},
		{{{Type: ou, Value: `a\`}, {Type: cn, Value: "b"}}},
		{{{Type: ou, Value: `a+CN=b`}}},
		{{{Type: cn, Value: `host/vm01.example.org`}}},
		{{{Type: cn, Value: `C:\dir\`}}},
	}
	seen := map[string]int{}
	for i, d := range dns {
		s := d.OneLine()
		if j, ok := seen[s]; ok {
			t.Errorf("DNs %d and %d both print %q", j, i, s)
		}
		seen[s] = i
		back, err := ParseDN(s)
		if err != nil || !back.Equal(d) {
			t.Errorf("ParseDN(%q) = %v, %v: not DN %d", s, back, err, i)
		}
	}
}

// TestNameStringDistinct: NameString, the readable form of grid DNs in
// messages, prints two names that are not the same name differently,
// the values of the attributes it names itself (DC, UID, emailAddress)
// escaped as Go escapes those it names (a "," or "+" in a DC value, a
// leading "#" or space, a trailing space, a backslash). It is for display
// only: no decision or stored property uses it (records keep
// pkix.Name.String, lists are matched as DNs).
func TestNameStringDistinct(t *testing.T) {
	dc, uid, email := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	names := [][]pkix.AttributeTypeAndValue{
		{{Type: dc, Value: "org,DC=example"}},
		{{Type: dc, Value: "org"}, {Type: dc, Value: "example"}},
		{{Type: dc, Value: "example"}, {Type: dc, Value: "org"}},
		{{Type: dc, Value: "org+UID=alice"}},
		{{Type: uid, Value: "alice"}, {Type: cn, Value: "x"}},
		{{Type: uid, Value: "#alice"}, {Type: cn, Value: "x"}},
		{{Type: uid, Value: " alice"}, {Type: cn, Value: "x"}},
		{{Type: uid, Value: "alice "}, {Type: cn, Value: "x"}},
		{{Type: uid, Value: `alice\`}, {Type: cn, Value: "x"}},
		{{Type: email, Value: "alice@example.org"}},
		{{Type: cn, Value: "emailAddress=alice@example.org"}},
	}
	ca := testpki.NewRoot(t, "NameString CA")
	seen := map[string]int{}
	for i, n := range names {
		c := ca.Leaf(pkix.Name{ExtraNames: n}).Cert
		s := SubjectName(c)
		if j, ok := seen[s]; ok {
			t.Errorf("names %d and %d both print %q", j, i, s)
		}
		seen[s] = i
	}
	// a multi-valued RDN and the same attributes as two RDNs
	multi, err := asn1.Marshal(pkix.RDNSequence{{{Type: dc, Value: "org"}, {Type: uid, Value: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	two, err := asn1.Marshal(pkix.RDNSequence{{{Type: dc, Value: "org"}}, {{Type: uid, Value: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := NameString(multi, pkix.Name{}), NameString(two, pkix.Name{}); a == b {
		t.Errorf("a multi-valued RDN and two RDNs both print %q", a)
	}
}

// issue makes a certificate of tmpl signed by parent, for a new key,
// valid from a year before testNow to a year after: for the extensions
// testpki does not set.
func issue(t *testing.T, parent *testpki.CA, tmpl *x509.Certificate) *testpki.CA {
	t.Helper()
	k, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, _ = pki.RandomSerial()
	tmpl.NotBefore, tmpl.NotAfter = testNow.AddDate(-1, 0, 0), testNow.AddDate(1, 0, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, k.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.CA{Cert: c, Key: k, Parent: parent}
}

// TestChainConstraints: the people chain is built by crypto/x509, which
// enforces RFC 5280's rules on every CA of it: basicConstraints CA:TRUE,
// keyCertSign when there is a key usage, pathLenConstraint, and no
// critical extension it does not process (on any certificate of the
// chain). Each holds for an intermediate the signature brings.
func TestChainConstraints(t *testing.T) {
	critical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}
	subCA := func(cn string, pathLen int, exts ...pkix.Extension) *x509.Certificate {
		return &x509.Certificate{Subject: testpki.Name(cn), IsCA: true, BasicConstraintsValid: true, MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, ExtraExtensions: exts}
	}
	leafOf := func(t *testing.T, ca *testpki.CA, chain ...*x509.Certificate) *testpki.Leaf {
		l := issue(t, ca, &x509.Certificate{Subject: testpki.Name("Alice Creator"), KeyUsage: x509.KeyUsageDigitalSignature})
		return &testpki.Leaf{Cert: l.Cert, Key: l.Key, Chain: chain}
	}
	for _, c := range []struct {
		name    string
		want    string // in the creator check's detail
		creator func(t *testing.T, w *world) *testpki.Leaf
	}{
		{"fail an end-entity certificate as the intermediate", "parent certificate cannot sign", func(t *testing.T, w *world) *testpki.Leaf {
			ee := w.peopleRoot.Intermediate("Not A CA", testpki.WithoutCA())
			return leafOf(t, ee, ee.Cert)
		}},
		{"fail an intermediate whose key usage lacks keyCertSign", "parent certificate cannot sign", func(t *testing.T, w *world) *testpki.Leaf {
			ca := w.peopleRoot.Intermediate("CRL Signer Only", testpki.WithKeyUsage(x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature))
			return leafOf(t, ca, ca.Cert)
		}},
		{"fail a sub-CA below an intermediate of pathLen 0", "path length constraint", func(t *testing.T, w *world) *testpki.Leaf {
			zero := issue(t, w.peopleRoot, subCA("PathLen Zero CA", 0))
			below := issue(t, zero, subCA("Below PathLen Zero CA", -1))
			return leafOf(t, below, below.Cert, zero.Cert)
		}},
		{"fail an intermediate with an unknown critical extension", "unhandled critical extension", func(t *testing.T, w *world) *testpki.Leaf {
			ca := issue(t, w.peopleRoot, subCA("Critical Extension CA", -1, critical))
			return leafOf(t, ca, ca.Cert)
		}},
		{"fail a creator certificate with an unknown critical extension", "unhandled critical extension", func(t *testing.T, w *world) *testpki.Leaf {
			tmpl := &x509.Certificate{Subject: testpki.Name("Alice Creator"), KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: []pkix.Extension{critical}}
			l := issue(t, w.peopleSub, tmpl)
			return &testpki.Leaf{Cert: l.Cert, Key: l.Key, Chain: []*x509.Certificate{w.peopleSub.Cert}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.creator = c.creator(t, w)
			r := w.trust().Verify(w.bundle(bundleOpts{}).input(testNow))
			assertResult(t, r, false, failure{CheckCreator, ReasonCreatorUntrusted})
			if d := r.Check(CheckCreator).Detail; !strings.Contains(d, c.want) {
				t.Fatalf("creator detail %q lacks %q", d, c.want)
			}
		})
	}
}

// TestNamespaceLinkCertificate: a CA rolling its key over under its own
// name certifies the new key with a self-issued link certificate (issuer
// = subject, the old key signing); signatures carry it. Its subject is
// the CA's own name, not a name it issues: RFC 5280 6.1.4 (b) and (g)
// apply name constraints to a self-issued certificate only when it is the
// last of the path. With trust.namespaces = "enforce" the CA's namespace
// ("/O=Science/.*") does not hold its own name, so checking the link
// certificate against it refused every rollover chain. The link
// certificate is held to the name it already had; what the new key
// issues is still held to the namespace.
func TestNamespaceLinkCertificate(t *testing.T) {
	w := newWorld(t)
	valid := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	name := func(o, cn string) pkix.Name { return pkix.Name{Organization: []string{o}, CommonName: cn} }
	old := testpki.NewRoot(t, "", testpki.WithSubject(name("Grid", "Science CA")))
	newKey := testpki.NewRoot(t, "", testpki.WithSubject(name("Grid", "Science CA")))
	link := old.CrossSign(newKey)
	if !bytes.Equal(link.Cert.RawIssuer, link.Cert.RawSubject) {
		t.Fatal("the link certificate is not self-issued")
	}
	ns := namespacesOf(t, `TO Issuer "/O=Grid/CN=Science CA" PERMIT Subject "/O=Science/.*"`)
	alice, _ := ParseDN("/O=Science/CN=Alice")
	bob, _ := ParseDN("/O=Science/CN=Bob")
	tr, _, err := NewTrust(TrustOptions{
		People:     []*x509.Certificate{old.Cert},
		Registrar:  []*x509.Certificate{w.regRoot.Cert},
		VOs:        map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{alice, bob}, Approvers: []DN{alice, bob}}},
		Namespaces: ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	approver := old.Leaf(name("Science", "Bob"), valid)
	runCreatorCases(t, tr, w, approver, []creatorCase{
		{"ok the old key issues a name of its namespace", old.Leaf(name("Science", "Alice"), valid), ""},
		{"ok the new key, through the link certificate, issues a name of its namespace", link.Leaf(name("Science", "Alice"), valid), ""},
		{"fail the new key, through the link certificate, issues a name outside it", link.Leaf(name("Grid", "Alice"), valid), ReasonOutsideNamespace},
		// a self-issued leaf (the CA's own name on an end-entity
		// certificate) is checked: only a self-issued CA certificate
		// within the chain is skipped (mutation testing: "i == 0 ||" dropped)
		{"fail the CA issues a leaf of its own name, outside its namespace", old.Leaf(name("Grid", "Science CA"), valid), ReasonOutsideNamespace},
	})
}

// TestNamespaceForeignRuleBoundToItsCA: an IGTF policy file may state
// rules for a sub-CA that is not shipped ("TO Issuer <sub-CA> ..." in the
// root's <hash>.namespaces); such a sub-CA comes in a signature, below
// the CA whose file states the rule. The rule is that CA's word about a
// CA it issued: it applies to a chain that passes through the file's CA
// (its name and key), not to whoever bears the sub-CA's name. Otherwise a
// constrained CA whose namespace holds that name ("/O=Grid/CN=.*" holds
// "/O=Grid/CN=Grid Sub") issues a sub-CA of that name and takes on the
// rule, issuing names of the sub-CA's namespace it may not issue itself.
func TestNamespaceForeignRuleBoundToItsCA(t *testing.T) {
	w := newWorld(t)
	name := func(o, cn string) pkix.Name { return pkix.Name{Organization: []string{o}, CommonName: cn} }
	grid := testpki.NewRoot(t, "", testpki.WithSubject(name("Grid", "Grid Root")))
	other := testpki.NewRoot(t, "", testpki.WithSubject(name("Other", "Other CA")))
	gridSub := grid.Intermediate("", testpki.WithSubject(name("Grid", "Grid Sub"))) // not shipped
	impostor := other.Intermediate("", testpki.WithSubject(name("Grid", "Grid Sub")))
	dir := t.TempDir()
	testpki.WriteFile(t, dir, hashName(t, grid.Cert, "0"), testpki.CertPEM(grid.Cert))
	testpki.WriteFile(t, dir, hashName(t, grid.Cert, "namespaces"), []byte(`TO Issuer "/O=Grid/CN=Grid Root" PERMIT Subject "/O=Grid/CN=Grid Sub"
TO Issuer "/O=Grid/CN=Grid Sub" PERMIT Subject "/O=imagetrust test/CN=.*"
`))
	testpki.WriteFile(t, dir, hashName(t, other.Cert, "0"), testpki.CertPEM(other.Cert))
	testpki.WriteFile(t, dir, hashName(t, other.Cert, "namespaces"), []byte(`TO Issuer "/O=Other/CN=Other CA" PERMIT Subject "/O=Grid/CN=.*"
`))
	for _, c := range []struct {
		name string
		ca   *testpki.CA
		want string // "" valid, else the creator's and approver's reason
	}{
		{"ok the Grid Root's sub-CA under the rule the Grid Root's file gives it", gridSub, ""},
		{"fail the Other CA's sub-CA of the same name does not take that rule", impostor, ReasonOutsideNamespace},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.creator = c.ca.Leaf(testpki.Name("Alice Creator"))
			w.approver = c.ca.Leaf(testpki.Name("Bob Approver"))
			tr, warns := loadDirs(t, w, dir)
			if len(warns) != 0 {
				t.Errorf("warnings %q", warns)
			}
			r := tr.Verify(w.bundle(bundleOpts{}).input(testNow))
			if c.want == "" {
				assertResult(t, r, true)
				return
			}
			assertResult(t, r, false, failure{CheckCreator, c.want}, failure{CheckApprover, c.want})
		})
	}
}

// TestPeopleChainExtKeyUsage: an intermediate whose extendedKeyUsage
// restricts it to purposes no signer serves (a TLS server CA, EKU
// serverAuth) does not vouch for creators and approvers: the EKUs of a
// chain nest (as crypto/x509, NSS, CryptoAPI and the CA/B Forum's
// technically constrained CAs read them), and a people chain must allow
// one of clientAuth, emailProtection (the EKUs IGTF personal and robot
// certificates carry, and an S/MIME CA's) or codeSigning, or
// anyExtendedKeyUsage. No EKU anywhere (most IGTF CAs and many user
// certificates) restricts nothing; a leaf needs none.
func TestPeopleChainExtKeyUsage(t *testing.T) {
	subCA := func(t *testing.T, w *world, eku ...x509.ExtKeyUsage) *testpki.CA {
		return issue(t, w.peopleRoot, &x509.Certificate{Subject: testpki.Name("EKU CA"), IsCA: true, BasicConstraintsValid: true, MaxPathLen: -1,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, ExtKeyUsage: eku})
	}
	leafOf := func(t *testing.T, ca *testpki.CA, eku ...x509.ExtKeyUsage) *testpki.Leaf {
		l := issue(t, ca, &x509.Certificate{Subject: testpki.Name("Alice Creator"), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku})
		var chain []*x509.Certificate
		for c := ca; c.Parent != nil; c = c.Parent {
			chain = append(chain, c.Cert)
		}
		return &testpki.Leaf{Cert: l.Cert, Key: l.Key, Chain: chain}
	}
	serverAuth, clientAuth, email := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection
	for _, c := range []struct {
		name    string
		ok      bool
		creator func(t *testing.T, w *world) *testpki.Leaf
	}{
		{"ok no EKU on the intermediate or the leaf", true, func(t *testing.T, w *world) *testpki.Leaf { return leafOf(t, subCA(t, w)) }},
		{"ok an IGTF user certificate (clientAuth, emailProtection) below an intermediate without EKU", true, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w), clientAuth, email)
		}},
		{"ok an S/MIME intermediate (clientAuth, emailProtection), a leaf without EKU", true, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w, clientAuth, email))
		}},
		{"ok an intermediate with anyExtendedKeyUsage", true, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w, x509.ExtKeyUsageAny), clientAuth)
		}},
		{"ok an IGTF host certificate (serverAuth, clientAuth)", true, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w), serverAuth, clientAuth)
		}},
		{"fail a TLS server intermediate (serverAuth) issues a signer", false, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w, serverAuth))
		}},
		{"fail a TLS server intermediate issues a signer that claims clientAuth", false, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w, serverAuth), clientAuth)
		}},
		{"fail a signer certificate for TLS servers only", false, func(t *testing.T, w *world) *testpki.Leaf {
			return leafOf(t, subCA(t, w), serverAuth)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.creator = c.creator(t, w)
			r := w.trust().Verify(w.bundle(bundleOpts{}).input(testNow))
			if c.ok {
				assertResult(t, r, true)
				return
			}
			assertResult(t, r, false, failure{CheckCreator, ReasonCreatorUntrusted})
			if d := r.Check(CheckCreator).Detail; !strings.Contains(d, "key usage") {
				t.Fatalf("creator detail %q does not name the key usage", d)
			}
			// a chain refused for its key usage is no time failure: check 5
			// is not blamed (mutation testing: verifyPerson retrying at
			// the certificate's mid-life for any invalid-certificate error)
			if c := r.Check(CheckSignerTime); !c.OK {
				t.Fatalf("signer-time check %+v blamed for a key usage refusal", c)
			}
		})
	}
}

// TestImageCertOutlivesRegistrarCA: the image certificate's chain is
// judged at registration (its notBefore), so nothing but its own notAfter
// would end an image whose Registrar CA has expired. register caps
// --expires at its CA's expiry; an image certificate another tool issued
// past the expiry of a CA of its chain is refused (image-cert-untrusted),
// by Verify as by CheckRecordChains (the proxy's re-verification), so the
// catalogue record's imagetrust_image_not_after never runs past the
// chain. A chain through a re-issued certificate of the CA (same name and
// key) that is valid long enough is taken.
func TestImageCertOutlivesRegistrarCA(t *testing.T) {
	w := newWorld(t)
	short := testpki.NewRoot(t, "Short Registrar CA", testpki.WithValidity(testNow.AddDate(-1, 0, 0), testNow.AddDate(0, 1, 0)))
	reissued := testpki.NewRoot(t, "Short Registrar CA", testpki.WithSigner(short.Key), testpki.WithValidity(testNow.AddDate(-1, 0, 0), testNow.AddDate(2, 0, 0)))
	vos := w.trust().vos
	trust := func(reg ...*x509.Certificate) *Trust {
		tr, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}, Registrar: reg, VOs: vos})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	for _, c := range []struct {
		name    string
		expires time.Time
		reg     []*x509.Certificate
		ok      bool
	}{
		{"ok the image certificate expires before its CA", testNow.AddDate(0, 0, 14), []*x509.Certificate{short.Cert}, true},
		{"fail the image certificate outlives its CA", testNow.AddDate(0, 3, 0), []*x509.Certificate{short.Cert}, false},
		{"ok a re-issued certificate of the CA outlives it", testNow.AddDate(0, 3, 0), []*x509.Certificate{short.Cert, reissued.Cert}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := w.bundle(bundleOpts{regCA: short, expires: c.expires})
			tr := trust(c.reg...)
			r := tr.Verify(b.input(testNow))
			if c.ok {
				assertResult(t, r, true)
			} else {
				assertResult(t, r, false, failure{CheckRegistrar, ReasonImageCertUntrusted})
				if d := r.Check(CheckRegistrar).Detail; !strings.Contains(d, "Short Registrar CA") || !strings.Contains(d, "after") {
					t.Fatalf("registrar detail %q", d)
				}
			}
			// the proxy's re-verification of the record (made where the
			// re-issued certificate is trusted) agrees
			props, err := RecordProperties(trust(reissued.Cert).Verify(b.input(testNow)), b.desc, b.sig)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.CheckRecordChains(props); (err == nil) != c.ok {
				t.Fatalf("CheckRecordChains: %v", err)
			}
		})
	}
}

// creatorCase is a creator's certificate and what a bundle it signs gets.
type creatorCase struct {
	name    string
	creator *testpki.Leaf
	want    string // "" valid, else the creator check's reason
}

// runCreatorCases verifies with tr, as a subtest each, a bundle of w that
// each case's creator signed and approver approved.
func runCreatorCases(t *testing.T, tr *Trust, w *world, approver *testpki.Leaf, cases []creatorCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tr.Verify(w.bundle(bundleOpts{creator: c.creator, approver: approver}).input(testNow))
			if c.want == "" {
				assertResult(t, r, true)
				return
			}
			assertResult(t, r, false, failure{CheckCreator, c.want})
		})
	}
}

// utf8UpperName re-encodes a raw DER name with every string value a
// UTF8String in upper case: the same name under RFC 5280 7.1 (string type
// aside, caseIgnoreMatch), other bytes.
func utf8UpperName(t *testing.T, raw []byte) []byte {
	t.Helper()
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &seq); err != nil {
		t.Fatal(err)
	}
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	// (a slice type whose name ends in SET marshals as a SET OF)
	type rdnSET []atv
	var out []rdnSET
	for _, set := range seq {
		var rdn rdnSET
		for _, a := range set {
			s, _ := a.Value.(string)
			rdn = append(rdn, atv{a.Type, asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(strings.ToUpper(s))}})
		}
		out = append(out, rdn)
	}
	b, err := asn1.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var fixed pkix.RDNSequence
	if _, err := asn1.Unmarshal(b, &fixed); err == nil && len(fixed) == len(seq) {
		return b
	}
	t.Fatal("re-encoded name does not decode")
	return nil
}

// TestCRLIssuerNameEncoding: a CRL whose issuer name is encoded otherwise
// than its CA certificate's subject (a UTF8String where the certificate
// has a PrintableString, another case: a CA whose CRLs come from another
// tool) names the same CA under RFC 5280 7.1, which compares names by
// string preparation and caseIgnoreMatch, not by bytes. CRLs were matched
// to their CA by the raw bytes (crl.Verify, the index, the verifier's
// anchors), and by the printed name, case and all, for the catalogue
// record: the CRL was never used (its revocations missed by the verifier
// and by the CRL job; under require_crl, "no CRL loaded"). Now they are
// matched by crl.NameKey, as validator.DN.Equal compares names.
func TestCRLIssuerNameEncoding(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	alt := utf8UpperName(t, w.peopleSub.Cert.RawSubject)
	if bytes.Equal(alt, w.peopleSub.Cert.RawSubject) {
		t.Fatal("the re-encoded name has the same bytes")
	}
	signer := *w.peopleSub.Cert
	signer.RawSubject = alt
	crlOf := func(entries ...x509.RevocationListEntry) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(3), ThisUpdate: testNow.AddDate(0, 0, -1),
			NextUpdate: testNow.AddDate(0, 0, 7), RevokedCertificateEntries: entries}, &signer, w.peopleSub.Key)
		if err != nil {
			t.Fatal(err)
		}
		rl, _ := x509.ParseRevocationList(der)
		if !bytes.Equal(rl.RawIssuer, alt) {
			t.Fatal("the CRL's issuer is not the re-encoded name")
		}
		return der
	}
	fresh := func(ca *testpki.CA) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
	}
	revoked := crlOf(x509.RevocationListEntry{SerialNumber: w.creator.Cert.SerialNumber, RevocationTime: testNow.AddDate(0, -1, 0), ReasonCode: crl.ReasonKeyCompromise})
	trust := func(require bool, crls ...[]byte) *Trust {
		tr, warns, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: crls, VOs: w.trust().vos, RequireCRL: require, Now: testNow})
		if err != nil || len(warns) > 0 {
			t.Fatalf("%v %q", err, warns)
		}
		return tr
	}
	t.Run("fail the creator revoked in a CRL whose issuer is encoded otherwise", func(t *testing.T) {
		r := trust(false, fresh(w.peopleRoot), revoked, fresh(w.regRoot)).Verify(b.input(testNow))
		if r.Valid || r.Revocation == nil || !bytes.Equal(r.Revocation.Cert.Raw, w.creator.Cert.Raw) {
			t.Fatalf("valid %v, revocation %v", r.Valid, r.Revocation)
		}
	})
	t.Run("ok such a CRL meets require_crl", func(t *testing.T) {
		r := trust(true, fresh(w.peopleRoot), crlOf(), fresh(w.regRoot)).Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
		}
	})
	t.Run("fail the CRL job revokes the catalogue record too", func(t *testing.T) {
		record, err := RecordProperties(trust(false, fresh(w.peopleRoot), fresh(w.peopleSub), fresh(w.regRoot)).Verify(b.input(testNow)), b.desc, b.sig)
		if err != nil {
			t.Fatal(err)
		}
		ix := &crl.Index{}
		for ca, der := range map[*testpki.CA][]byte{w.peopleRoot: fresh(w.peopleRoot), w.peopleSub: revoked, w.regRoot: fresh(w.regRoot)} {
			rl, err := crl.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.Add(rl, ca.Cert, testNow); err != nil {
				t.Fatal(err)
			}
		}
		if s, _, _ := crl.Judge(ix, crl.Image{ID: "i", Status: crl.StatusActive, Properties: record}, crl.Policy{RequireCRL: true}, testNow); s != crl.StateRevoked {
			t.Fatalf("CRL job: %s", s)
		}
	})
}
