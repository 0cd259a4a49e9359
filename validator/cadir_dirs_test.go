package validator

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestLoadTrustSkippedCAKeepsItsPolicy: a CA whose <hash>.0 is skipped (a
// FIFO here) may still come as an intermediate in a signature; its own
// policy file, not a wider rule for it in its root's file, constrains it.
func TestLoadTrustSkippedCAKeepsItsPolicy(t *testing.T) {
	w := newWorld(t)
	mallory := w.peopleSub.Leaf(testpki.Name("Mallory Stranger"))
	setup := func(t *testing.T, subPolicy []byte) string {
		dir := t.TempDir()
		testpki.WriteFile(t, dir, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
		testpki.WriteFile(t, dir, hashName(t, w.peopleRoot.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/CN=People Issuing CA"
TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject ".*"
`))
		testpki.WriteFile(t, dir, hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
		testpki.WriteFile(t, dir, hashName(t, w.peopleSub.Cert, "namespaces"), subPolicy)
		return dir
	}
	fifo := func(t *testing.T, dir string) {
		p := filepath.Join(dir, hashName(t, w.peopleSub.Cert, "0"))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	narrow := []byte(`TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject "/O=imagetrust test/CN=(Alice Creator|Bob Approver)"
`)
	t.Run("ok valid sub-CA keeps its own namespace", func(t *testing.T) {
		tr, warns := loadDirs(t, w, setup(t, narrow))
		if len(warns) != 0 {
			t.Errorf("warnings %q", warns)
		}
		assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), true)
		assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: mallory}).input(testNow)), false,
			failure{CheckCreator, ReasonOutsideNamespace})
	})
	t.Run("fail sub-CA certificate file a FIFO: its own namespace still holds", func(t *testing.T) {
		dir := setup(t, narrow)
		fifo(t, dir)
		tr, warns := loadDirs(t, w, dir)
		if len(warns) != 1 || !strings.Contains(warns[0], "not a regular file") {
			t.Errorf("warnings %q", warns)
		}
		assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), true)
		assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: mallory}).input(testNow)), false,
			failure{CheckCreator, ReasonOutsideNamespace})
	})
	t.Run("fail sub-CA certificate file a FIFO, its policy file broken: it may issue no name", func(t *testing.T) {
		dir := setup(t, []byte("TO Issuer \"/O=imagetrust test/CN=People Issuing CA\" PERMIT Subject \"([\"\n"))
		fifo(t, dir)
		tr, warns := loadDirs(t, w, dir)
		if len(warns) != 2 || !strings.Contains(warns[1], hashName(t, w.peopleSub.Cert, "namespaces")+": not used") {
			t.Errorf("warnings %q", warns)
		}
		assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: mallory}).input(testNow)), false,
			failure{CheckCreator, ReasonOutsideNamespace})
		assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), false,
			failure{CheckCreator, ReasonOutsideNamespace}, failure{CheckApprover, ReasonOutsideNamespace})
	})
}
