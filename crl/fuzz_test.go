package crl

import (
	"bytes"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// FuzzParse feeds arbitrary bytes to both parsers: neither may panic, and
// when both accept, they must agree on the entries.
func FuzzParse(f *testing.F) {
	root := testpki.NewRoot(f, "Fuzz Root")
	der := root.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: t0, Entries: []pki.Revoked{
		{Serial: big.NewInt(1), Reason: 1}, {Serial: big.NewInt(300), Reason: -1}, {Serial: big.NewInt(1 << 40), Reason: 6}}})
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	f.Add(der[:len(der)/2])
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseList(b)
		rl, err2 := Parse(b)
		if err != nil || err2 != nil {
			return
		}
		if l.Len() != len(rl.RevokedCertificateEntries) {
			t.Fatalf("ParseList has %d entries, Parse %d", l.Len(), len(rl.RevokedCertificateEntries))
		}
		for _, e := range rl.RevokedCertificateEntries {
			if _, ok := l.Find(e.SerialNumber); !ok {
				t.Fatalf("serial %x not found", e.SerialNumber)
			}
		}
		_ = Verify(l.Header, root.Cert)
	})
}

// FuzzIntake runs arbitrary bytes through the whole acceptance path of one
// CA: parse, verify, date and number checks. A CRL that is not signed by the
// CA must never be accepted.
func FuzzIntake(f *testing.F) {
	root := testpki.NewRoot(f, "Intake Root")
	ca := root.Intermediate("Intake CA")
	good := ca.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: t0, Entries: []pki.Revoked{{Serial: big.NewInt(9), Reason: 1}}})
	f.Add(good)
	f.Add(root.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: t0}))
	f.Add(ca.CRL(pki.CRLTemplate{Number: 4, ThisUpdate: t0, DeltaOf: 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix := &Index{ClockSkew: time.Minute}
		l, err := ParseList(b)
		if err != nil {
			return
		}
		if _, err := ix.AddList(l, ca.Cert, t0.Add(time.Hour), "fuzz"); err != nil {
			return
		}
		if l.Header.CheckSignatureFrom(ca.Cert) != nil {
			t.Fatal("accepted a CRL whose signature does not verify")
		}
	})
}

// FuzzRecordRefs reads arbitrary imagetrust_chain and registration values
// (properties of Glance images): never a panic, and what is read has an
// issuer and a serial for every element of the chain.
func FuzzRecordRefs(f *testing.F) {
	f.Add(`[{"role":"image","issuer":"CN=Registrar CA","serial":"1f","aki":"0a0b"},{"role":"creator-ca","issuer":"CN=People","serial":"2"}]`, "2026-06-01T12:00:00Z")
	f.Add(`[{"role":"x","issuer":"CN=a","serial":"-5"}]`, "2026-06-01T12:00:00+02:00")
	f.Add(`[]`, "")
	f.Add(`[{"role":"image","issuer":"CN=a","serial":"1F"}]`, "2026-06-01T12:00:00Z")
	f.Fuzz(func(t *testing.T, chain, notBefore string) {
		refs, _, err := RecordRefs(map[string]string{PropChain: chain, PropNotBefore: notBefore})
		if err != nil {
			return
		}
		if len(refs) == 0 {
			t.Fatal("no references and no error")
		}
		for i, r := range refs {
			if r.Issuer == "" || r.Serial == nil {
				t.Fatalf("reference %d without issuer or serial: %+v", i, r)
			}
		}
	})
}

// FuzzIDPURIs reads arbitrary issuingDistributionPoint values (a CRL's
// untrusted bytes): no panic, every URI found lies within the value, and
// a value that names no distribution point gives none (takesPoints then
// never reads them).
func FuzzIDPURIs(f *testing.F) {
	f.Add(pki.IDPDistributionPoint("http://crl.example.org/a.crl"))
	f.Add([]byte{0x30, 0x0d, 0xa0, 0x0b, 0xa0, 0x09, 0x86, 0x01, 'x', 0x82, 0x01, 'h', 0x86, 0x01, 'y'})
	f.Add([]byte{0x30, 0x06, 0xa0, 0x04, 0xa1, 0x02, 0x31, 0x00})
	f.Add(pki.IDPOnlyUserCerts)
	f.Add([]byte{0x30, 0x84, 0x00, 0x00, 0x00, 0x05})
	f.Fuzz(func(t *testing.T, v []byte) {
		uris := idpURIs(v)
		if len(uris) > 0 && !idpNamesPoint(v) {
			t.Fatalf("URIs %q from a value naming no point", uris)
		}
		for _, u := range uris {
			if !bytes.Contains(v, []byte(u)) {
				t.Fatalf("URI %q is not in the value", u)
			}
		}
	})
}
