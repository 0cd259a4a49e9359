package validator

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestRequireCRLRekeyedCA: a people CA re-keyed under its own name (an
// IGTF rollover: the old and the new certificate both in the trust store)
// has a CRL for each key; a CRL of the new key is not one of the old key
// (the revocation lookup, crl.Index.Covering, matches the certificate's
// authorityKeyIdentifier to the CRL signer's subjectKeyIdentifier, so it
// would never look in it). With require_crl, a creator issued under the
// old key is refused while only the new key's CRL is loaded, as the CRL
// job refuses it (crl.Index.CoveringScope), not accepted with no CRL that
// could ever revoke it.
func TestRequireCRLRekeyedCA(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	rekeyed := w.peopleRoot.Intermediate("People Issuing CA") // same name, new key
	if !bytes.Equal(rekeyed.Cert.RawSubject, w.peopleSub.Cert.RawSubject) {
		t.Fatal("the re-keyed CA has another name")
	}
	fresh := func(ca *testpki.CA) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
	}
	vos := w.trust().vos
	trust := func(crls ...[]byte) *Trust {
		// the trust store holds both certificates of the re-keyed CA
		tr, _, err := NewTrust(TrustOptions{
			People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert, rekeyed.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: crls, VOs: vos, RequireCRL: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	t.Run("fail only the new key's CRL", func(t *testing.T) {
		r := trust(fresh(w.peopleRoot), fresh(rekeyed), fresh(w.regRoot)).Verify(b.input(testNow))
		if r.Valid || r.Check(CheckRevocation).Reason != ReasonRevocationUnknown || !strings.Contains(r.Check(CheckRevocation).Detail, "no CRL loaded") {
			t.Fatalf("valid %v, revocation check %+v", r.Valid, r.Check(CheckRevocation))
		}
	})
	t.Run("ok the old key's CRL", func(t *testing.T) {
		r := trust(fresh(w.peopleRoot), fresh(w.peopleSub), fresh(w.regRoot)).Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
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
	for _, c := range []struct {
		name    string
		creator *testpki.Leaf
		want    string // "" valid, else the creator check's reason
	}{
		{"ok the Science CA issues a name of its namespace", science.Leaf(name("Science", "Alice"), valid), ""},
		{"fail the Science CA's namesake, the Grid Root's sub-CA, issues a name of the Science CA's namespace", impostor.Leaf(name("Science", "Alice"), valid), ReasonOutsideNamespace},
		{"fail the Grid Root's sub-CA issues a name of the Grid Root's namespace (not listed)", impostor.Leaf(name("Grid", "Carol"), valid), ReasonCreatorNotListed},
	} {
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
