package validator

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestNameStringGridDN: a grid DN (DC=…, UID, emailAddress) prints with
// names, not as Go's dotted OIDs with hex values, in every message that
// names a certificate; names Go already prints (CN, OU, O …) print as
// pkix.Name.String prints them, escaping included.
func TestNameStringGridDN(t *testing.T) {
	dc := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	uid := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	root := testpki.NewRoot(t, "Example Grid Root CA")
	grid := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: dc, Value: "org"}, {Type: dc, Value: "example"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Users"},
		{Type: uid, Value: "alice"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Alice Example, PhD"},
	}}
	c := root.Leaf(grid).Cert
	if got, want := SubjectName(c), `CN=Alice Example\, PhD,UID=alice,OU=Users,DC=example,DC=org`; got != want {
		t.Errorf("SubjectName = %q, want %q", got, want)
	}
	if strings.Contains(c.Subject.String(), "DC=") {
		t.Fatal("pkix.Name.String names DC now: NameString may go")
	}
	plain := root.Leaf(pkix.Name{Organization: []string{"imagetrust demo"}, OrganizationalUnit: []string{"Users"}, CommonName: "#Bob+Carol "}).Cert
	if got, want := SubjectName(plain), plain.Subject.String(); got != want {
		t.Errorf("SubjectName = %q, pkix.Name.String %q", got, want)
	}
	if got, want := IssuerName(plain), root.Cert.Subject.String(); got != want {
		t.Errorf("IssuerName = %q, want %q", got, want)
	}
	if got := NameString([]byte{0x30, 0x01}, plain.Subject); got != plain.Subject.String() {
		t.Errorf("NameString of bad DER = %q, want the fallback", got)
	}
}
