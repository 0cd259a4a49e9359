package validator

import (
	"fmt"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// loadDirs is LoadTrust of w's creator and approver (VO atlas) with dirs as
// trust.ca_dirs, in that order.
func loadDirs(t *testing.T, w *world, dirs ...string) (*Trust, []string) {
	t.Helper()
	reg := testpki.WriteFile(t, t.TempDir(), "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	q := make([]string, len(dirs))
	for i, d := range dirs {
		q[i] = fmt.Sprintf("%q", d)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_dirs = [%s]\nregistrar_ca_files = [%q]\n[vo.atlas]\ncreators = [%q]\napprovers = [%q]\n",
		strings.Join(q, ", "), reg, oneLine(t, w.creator.Cert), oneLine(t, w.approver.Cert))))
	if err != nil {
		t.Fatal(err)
	}
	tr, warns, err := LoadTrust(cfg)
	if err != nil {
		t.Fatalf("LoadTrust: %v", err)
	}
	return tr, warns
}

// TestLoadTrustForeignRuleAcrossDirs: a CA with a policy file of its own
// in one ca_dirs directory is not widened by another CA's rule for it in
// another directory, whichever comes first.
func TestLoadTrustForeignRuleAcrossDirs(t *testing.T) {
	w := newWorld(t)
	subDir, rootDir := t.TempDir(), t.TempDir()
	testpki.WriteFile(t, subDir, hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
	testpki.WriteFile(t, subDir, hashName(t, w.peopleSub.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject "/O=imagetrust test/CN=(Alice Creator|Bob Approver)"
`))
	testpki.WriteFile(t, rootDir, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, rootDir, hashName(t, w.peopleRoot.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/CN=People Issuing CA"
TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject ".*"
`))
	mallory := w.peopleSub.Leaf(testpki.Name("Mallory Stranger"))
	for _, c := range []struct {
		name string
		dirs []string
	}{
		{"fail own directory first", []string{subDir, rootDir}},
		{"fail foreign directory first", []string{rootDir, subDir}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, warns := loadDirs(t, w, c.dirs...)
			if len(warns) != 0 {
				t.Errorf("warnings %q", warns)
			}
			assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), true)
			assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: mallory}).input(testNow)), false,
				failure{CheckCreator, ReasonOutsideNamespace})
		})
	}
}
