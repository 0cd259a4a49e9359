package validator

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestLoadTrustIGTFDir loads people CAs and their CRLs from an IGTF-style
// directory (<hash>.0 certificates, <hash>.r0 CRLs as fetch-crl writes them)
// and a Registrar CA from a file, and checks that the directory's CRL is used.
func TestLoadTrustIGTFDir(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	dir := t.TempDir()
	igtf := filepath.Join(dir, "certificates")
	if err := os.MkdirAll(igtf, 0o755); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, igtf, "1a2b3c4d.0", testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, igtf, "5e6f7a8b.0", testpki.CertPEM(w.peopleSub.Cert))
	testpki.WriteFile(t, igtf, "1a2b3c4d.signing_policy", []byte("ignored"))
	testpki.WriteFile(t, igtf, "1a2b3c4d.r0", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: revokeCRL(w.peopleRoot, 1)}))
	crlDER := revokeCRL(w.peopleSub, 3, pki.Revoked{Serial: w.approver.Cert.SerialNumber, Reason: crl.ReasonKeyCompromise})
	testpki.WriteFile(t, igtf, "5e6f7a8b.r0", crlDER) // DER works too
	reg := testpki.WriteFile(t, dir, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	toml := fmt.Sprintf(`[trust]
ca_dirs = [%q]
registrar_ca_files = [%q]
[vo.atlas]
creators = [%q]
approvers = ["CN=Bob Approver,O=imagetrust test"]
`, igtf, reg, cdn.OneLine())
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	tr, warns, err := LoadTrust(cfg)
	if err != nil || len(warns) > 0 {
		t.Fatalf("LoadTrust: %v %v", err, warns)
	}
	r := tr.Verify(b.input(testNow))
	assertResult(t, r, false, failure{CheckRevocation, ReasonRevoked})
	if r.Check(CheckCreator).OK != true || r.Check(CheckApprover).OK != true {
		t.Fatalf("creator/approver from the IGTF dir not trusted: %+v", r.Checks)
	}
}

func TestLoadTrustErrors(t *testing.T) {
	dir := t.TempDir()
	bad := testpki.WriteFile(t, dir, "bad.pem", []byte("not a certificate"))
	for name, toml := range map[string]string{
		"fail missing CA file": `[trust]
ca_files = ["/nonexistent/ca.pem"]`,
		"fail garbage CA file": fmt.Sprintf(`[trust]
ca_files = [%q]`, bad),
		"fail bad creator DN": `[vo.x]
creators = ["CN"]`,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(toml))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadTrust(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
