package validator

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestParseNamespacesGrammar: the words of a namespaces line are read
// where they stand (TO Issuer "…" PERMIT|DENY Subject "…"), never inside
// the quoted names.
func TestParseNamespacesGrammar(t *testing.T) {
	cases := []struct {
		name, line  string
		permit      bool
		issuer, err string
	}{
		{name: "ok permit", line: `TO Issuer "/CN=CA" PERMIT Subject "/O=x/.*"`, permit: true, issuer: "/CN=CA"},
		{name: "ok deny, lower case words", line: `to issuer "/CN=CA" deny subject "/O=x/.*"`, issuer: "/CN=CA"},
		{name: "ok trailing comment", line: `TO Issuer "/CN=CA" PERMIT Subject "/O=x/.*"   # users`, permit: true, issuer: "/CN=CA"},
		{name: "ok DENY inside the subject pattern is a pattern", line: `TO Issuer "/CN=CA" PERMIT Subject "/O=DENY/.*"`, permit: true, issuer: "/CN=CA"},
		{name: "ok PERMIT inside the issuer is a name", line: `TO Issuer "/CN=PERMIT CA" DENY Subject "/O=x/.*"`, issuer: "/CN=PERMIT CA"},
		// ı upper-cases to the one-byte I: offsets into the upper-cased
		// line ran past its end (a panic while loading the trust store)
		{name: "ok issuer whose upper case is shorter", line: `TO Issuer "/CN=` + strings.Repeat("ı", 40) + `" PERMIT Subject "/O=x/.*"`, permit: true, issuer: "/CN=" + strings.Repeat("ı", 40)},
		{name: "ok issuer with bytes that are not UTF-8", line: "TO Issuer \"/CN=\xff\xfe\" PERMIT Subject \"/O=x/.*\"", permit: true, issuer: "/CN=\xff\xfe"},
		{name: "fail no PERMIT or DENY", line: `TO Issuer "/CN=CA" Subject "/O=x/.*"`, err: "expected TO Issuer"},
		{name: "fail both words", line: `TO Issuer "/CN=CA" PERMIT DENY Subject "/O=x/.*"`, err: "expected TO Issuer"},
		{name: "fail other word", line: `TO Issuer "/CN=CA" ALLOW Subject "/O=x/.*"`, err: "neither PERMIT nor DENY"},
		{name: "fail words out of order", line: `TO "/CN=CA" Issuer PERMIT Subject "/O=x/.*"`, err: "expected TO Issuer"},
		{name: "fail text after the pattern", line: `TO Issuer "/CN=CA" PERMIT Subject "/O=x/.*" PERMIT`, err: "expected TO Issuer"},
		{name: "fail unclosed pattern", line: `TO Issuer "/CN=CA" PERMIT Subject "/O=x/.*`, err: "expected an issuer and a subject pattern"},
		{name: "fail SELF (not supported)", line: `TO Issuer SELF PERMIT Subject "/O=x/.*"`, err: "expected an issuer and a subject pattern"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pols, err := ParseNamespaces([]byte(c.line), "t.namespaces")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(pols) != 1 || pols[0].issuer != c.issuer {
				t.Fatalf("policies %+v", pols)
			}
			if got := len(pols[0].permit) == 1 && len(pols[0].deny) == 0; got != c.permit {
				t.Fatalf("permit = %v (permit %d, deny %d)", got, len(pols[0].permit), len(pols[0].deny))
			}
		})
	}
}

// FuzzParseNamespaces: an IGTF .namespaces file never panics the trust
// loader, and each policy it yields holds exactly one subject rule.
func FuzzParseNamespaces(f *testing.F) {
	f.Add([]byte("TO Issuer \"/DC=ch/DC=cern/CN=CERN Grid CA\" \\\n   PERMIT Subject \"/DC=ch/DC=cern/.*\"\n"))
	f.Add([]byte(`TO Issuer "/CN=PERMIT" DENY Subject "/O=DENY/.*" # c`))
	f.Add([]byte(`TO Issuer "/CN=ıı" PERMIT Subject "/O=x/.*"`))
	f.Add([]byte("# comment\n\nTO Issuer '/CN=x' PERMIT Subject '(['\n"))
	// from the hostile CA directory (TestLoadTrustHostileCADir)
	f.Add([]byte("TO Issuer \"\" PERMIT Subject \".*\"\n"))
	f.Add([]byte("TO Issuer \"/\" PERMIT Subject \".*\"\n"))
	f.Add([]byte("TO Issuer \"/O=imagetrust test/CN=People Issuing CA\" PERMIT Subject \".*\"\nTO Issuer \"/O=imagetrust test/CN=Wrong Policy CA\" \\\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pols, err := ParseNamespaces(b, "fuzz.namespaces")
		if err != nil {
			return
		}
		for _, p := range pols {
			if len(p.permit)+len(p.deny) != 1 {
				t.Fatalf("policy with %d permit and %d deny rules", len(p.permit), len(p.deny))
			}
		}
	})
}

// FuzzParseSigningPolicy: a Globus .signing_policy file never panics the
// trust loader.
func FuzzParseSigningPolicy(f *testing.F) {
	f.Add([]byte("access_id_CA X509 '/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=dutchgrid/O=users/*\" \"/O=dutchgrid/O=hosts/*\"'\n"))
	f.Add([]byte("cond_subjects globus '\"/O=x/*\"'\n"))
	f.Add([]byte("access_id_CA X509 '/CN=x\ncond_subjects globus '\"\n"))
	// from the hostile CA directory (TestLoadTrustHostileCADir)
	f.Add([]byte("access_id_CA X509 ''\ncond_subjects globus '\"*\"'\n"))
	f.Add([]byte("access_id_CA X509 '/O=imagetrust test/CN=People Issuing CA'\ncond_subjects globus '\"*\"'\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseSigningPolicy(b, "fuzz.signing_policy")
	})
}

// TestParseNamespacesLongLine: a policy after a line longer than any
// scanner buffer is still read (a scanner stopped there, silently, and the
// policies after the long line were lost: fewer constraints).
func TestParseNamespacesLongLine(t *testing.T) {
	text := "# " + strings.Repeat("x", 2<<20) + "\n" +
		`TO Issuer "/CN=CA" DENY Subject "/O=x/.*"` + "\n"
	pols, err := ParseNamespaces([]byte(text), "t.namespaces")
	if err != nil || len(pols) != 1 || len(pols[0].deny) != 1 {
		t.Fatalf("policies %+v, err %v", pols, err)
	}
	sp, err := ParseSigningPolicy([]byte("# "+strings.Repeat("x", 2<<20)+"\naccess_id_CA X509 '/CN=CA'\ncond_subjects globus '\"/O=x/*\"'\n"), "t.signing_policy")
	if err != nil || len(sp) != 1 || len(sp[0].permit) != 1 {
		t.Fatalf("signing policy %+v, err %v", sp, err)
	}
}

// TestNamespacePatternsIgnoreCase: a subject is matched against the
// namespaces and signing_policy patterns ignoring case, as names are
// compared everywhere else (RFC 5280 7.1 caseIgnoreMatch; DN.Equal): a
// DENY matched case-sensitively let the denied name through in another
// case, a PERMIT refused the permitted name in another case. A pattern
// matches the whole subject, not one line of it (POSIX syntax made ^ and $
// line anchors: a newline in a value brought in a permitted line).
func TestNamespacePatternsIgnoreCase(t *testing.T) {
	issuer, err := ParseDN("/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth")
	if err != nil {
		t.Fatal(err)
	}
	nsFile := `TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" PERMIT Subject "/O=dutchgrid/O=users/.*"
TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" DENY Subject "/O=dutchgrid/O=users/CN=banned.*"`
	spFile := `access_id_CA X509 '/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth'
pos_rights globus CA:sign
cond_subjects globus '"/O=dutchgrid/O=users/*"'`
	load := namespacesFrom(t)
	ns := load(ParseNamespaces([]byte(nsFile), "t.namespaces"))
	// a PERMIT with a negated class, which matches a newline, beside a
	// DENY with ".*", which must match one too
	nsClass := load(ParseNamespaces([]byte(`TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" PERMIT Subject "/O=dutchgrid/O=users/CN=[^/]*"
TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" DENY Subject "/O=dutchgrid/O=users/CN=banned.*"`), "class.namespaces"))
	// a broad PERMIT beside a DENY of one branch
	nsOther := load(ParseNamespaces([]byte(`TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" PERMIT Subject "/O=dutchgrid/.*"
TO Issuer "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth" DENY Subject "/O=dutchgrid/O=other( people)?/.*"`), "other.namespaces"))
	sp := load(ParseSigningPolicy([]byte(spFile), "t.signing_policy"))
	for _, c := range []struct {
		name, subject string
		n             *Namespaces
		ok            bool
	}{
		{"ok namespaces, the pattern's case", "/O=dutchgrid/O=users/CN=Alice", ns, true},
		{"ok namespaces, another case", "/O=DutchGrid/O=Users/CN=Alice", ns, true},
		{"fail namespaces, denied name in another case", "/O=dutchgrid/O=users/CN=Banned User", ns, false},
		{"fail namespaces, outside", "/O=other/CN=Alice", ns, false},
		{"fail namespaces, a permitted line after a newline", "/O=other/CN=x\n/O=dutchgrid/O=users/CN=y", ns, false},
		{"ok namespaces, a newline inside a permitted value", "/O=dutchgrid/O=users/CN=a\nb", ns, true},
		{"ok namespaces, a negated class", "/O=dutchgrid/O=users/CN=Alice", nsClass, true},
		{"fail namespaces, a denied name with a newline", "/O=dutchgrid/O=users/CN=banned\nx", nsClass, false},
		// a name DN.Equal (the VO lists) takes for the denied one: a
		// leading, trailing or doubled space in a value
		{"fail namespaces, a denied name with a leading space", "/O=dutchgrid/O=users/CN= Banned User", ns, false},
		{"ok namespaces, a broad PERMIT", "/O=dutchgrid/O=users/CN=x", nsOther, true},
		{"fail namespaces, a denied RDN with a trailing space", "/O=dutchgrid/O=other /CN=x", nsOther, false},
		{"fail namespaces, a denied RDN with a doubled space", "/O=dutchgrid/O=other  people/CN=x", nsOther, false},
		{"ok namespaces, a permitted name with a doubled space", "/O=dutchgrid/O=users/CN=Alice  Smith", ns, true},
		{"fail signing_policy, a denied name with a newline", "/O=other\n/O=dutchgrid/O=users/CN=x", sp, false},
		{"ok signing_policy, another case", "/O=DUTCHGRID/O=USERS/CN=Alice", sp, true},
		{"fail signing_policy, outside", "/O=other/CN=Alice", sp, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.n.Check(issuer, c.subject); (err == nil) != c.ok {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

// TestNamespaceDenySpaceFolded: the chain check (CheckChain, as the sync
// and the proxy judge a signer's chain) matches a DENY against the subject
// with its values' white space folded too, as DN.Equal and so the VO lists
// compare names: a CA whose namespace permits "/O=dutchgrid/.*" but for a
// denied branch cannot issue a name of that branch with a trailing space
// in a value, which the VO lists take for the denied name.
func TestNamespaceDenySpaceFolded(t *testing.T) {
	root := testpki.NewRoot(t, "NS Root")
	rdn, err := DNFromRaw(root.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	pols, err := ParseNamespaces([]byte(`TO Issuer "`+rdn.OneLine()+`" PERMIT Subject "/O=dutchgrid/.*"
TO Issuer "`+rdn.OneLine()+`" DENY Subject "/O=dutchgrid/O=other/.*"`), "t.namespaces")
	if err != nil {
		t.Fatal(err)
	}
	ns := &Namespaces{}
	for _, p := range pols {
		if err := ns.add(p); err != nil {
			t.Fatal(err)
		}
	}
	o := asn1.ObjectIdentifier{2, 5, 4, 10}
	for _, c := range []struct {
		name, branch string
		ok           bool
	}{
		{"ok another branch", "users", true},
		{"fail the denied branch", "other", false},
		{"fail the denied branch with a trailing space", "other ", false},
		{"fail the denied branch with a leading space", " other", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf := root.Leaf(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: o, Value: "dutchgrid"}, {Type: o, Value: c.branch}, {Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "x"}}})
			if err := ns.CheckChain([]*x509.Certificate{leaf.Cert, root.Cert}); (err == nil) != c.ok {
				t.Fatalf("CheckChain: %v", err)
			}
		})
	}
}
