package validator

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

func TestParseDN(t *testing.T) {
	ca := testpki.NewRoot(t, "DN CA")
	leaf := ca.Leaf(pkix.Name{
		Country: []string{"CH"}, Organization: []string{"CERN"}, OrganizationalUnit: []string{"Users"},
		CommonName: "Alice Example",
		ExtraNames: []pkix.AttributeTypeAndValue{},
	})
	subj, err := DNFromRaw(leaf.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, in string
		equal    bool
	}{
		{"ok one-line", "/C=CH/O=CERN/OU=Users/CN=Alice Example", true},
		{"ok RFC 4514", "CN=Alice Example,OU=Users,O=CERN,C=CH", true},
		{"ok RFC 4514 with spaces and case", "cn=alice  example, ou=USERS, o=CERN, c=ch", true},
		{"ok RFC 4514 hex escape", `CN=Alice\20Example,OU=Users,O=CERN,C=CH`, true},
		{"ok dotted OID", "2.5.4.3=Alice Example,OU=Users,O=CERN,C=CH", true},
		{"fail order reversed", "/CN=Alice Example/OU=Users/O=CERN/C=CH", false},
		{"fail other name", "/C=CH/O=CERN/OU=Users/CN=Alice Exampel", false},
		{"fail prefix only", "/C=CH/O=CERN/OU=Users", false},
		{"fail extra RDN", "/C=CH/O=CERN/OU=Users/CN=Alice Example/CN=proxy", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dn, err := ParseDN(c.in)
			if err != nil {
				t.Fatalf("ParseDN(%q): %v", c.in, err)
			}
			if got := dn.Equal(subj); got != c.equal {
				t.Fatalf("Equal = %v, want %v (parsed %s)", got, c.equal, dn.OneLine())
			}
		})
	}
}

func TestParseDNGridForms(t *testing.T) {
	dn, err := ParseDN("/DC=ch/DC=cern/OU=computers/CN=host/vm01.cern.ch")
	if err != nil {
		t.Fatal(err)
	}
	last := dn[len(dn)-1][0]
	if !last.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) || last.Value != "host/vm01.cern.ch" {
		t.Fatalf("last RDN = %+v, want CN=host/vm01.cern.ch", last)
	}
	if got := dn.OneLine(); got != `/DC=ch/DC=cern/OU=computers/CN=host\/vm01.cern.ch` {
		t.Fatalf("OneLine = %q", got)
	}
	dn, err = ParseDN("/DC=org/DC=example/CN=Jane Doe+UID=jdoe")
	if err != nil || len(dn[len(dn)-1]) != 2 {
		t.Fatalf("multi-valued RDN: %v %v", dn, err)
	}
	// OpenSSL's names for the less common attributes (as
	// `openssl x509 -subject -nameopt compat` prints them) are types, not
	// part of the value before them
	const rogue = "/C=XX/O=Rogue/CN=Rogue CA/organizationIdentifier=VAT-1/dnQualifier=q/jurisdictionC=XX"
	dn, err = ParseDN(rogue)
	if err != nil || len(dn) != 6 || dn.OneLine() != rogue {
		t.Fatalf("OpenSSL attribute names: %d RDNs, %q, %v", len(dn), dn.OneLine(), err)
	}
}

func TestParseDNErrors(t *testing.T) {
	for _, in := range []string{"", "/", "CN", "CN=a,", "XX=a", "/FOO=bar", `CN="unterminated`, `CN=a\`, "CN=#zz"} {
		if _, err := ParseDN(in); err == nil {
			t.Errorf("fail %q: accepted", in)
		}
	}
}

func FuzzParseDN(f *testing.F) {
	for _, s := range []string{"/C=CH/O=CERN/CN=Alice", "CN=Bob,O=Example", `CN=a\,b+UID=x;O=y`, "CN=#0c03616263", "/CN=host/x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dn, err := ParseDN(s)
		if err != nil {
			return
		}
		if len(dn) == 0 {
			t.Fatal("empty DN without error")
		}
		if !dn.Equal(dn) {
			t.Fatal("DN not equal to itself")
		}
		_ = dn.OneLine()
	})
}
