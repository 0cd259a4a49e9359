package validator

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestTrustAnchors covers how NewTrust files the configured CAs and their
// CRLs: roots by their self-signature whatever its hash, CAs told apart by
// name and key, and a CRL kept for the CA of a chain that signed it.
func TestTrustAnchors(t *testing.T) {
	t.Run("ok people root with a SHA-1 self-signature", func(t *testing.T) {
		// long-lived IGTF roots still carry one; CheckSignatureFrom refuses
		// SHA-1, and the root was filed as an intermediate
		w := newWorld(t)
		w.peopleRoot = testpki.NewRoot(t, "People Root", testpki.WithKey(pki.RSA2048), testpki.WithSignatureAlgorithm(x509.SHA1WithRSA))
		w.peopleSub = w.peopleRoot.Intermediate("People Issuing CA")
		v := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
		w.creator = w.peopleSub.Leaf(testpki.Name("Alice Creator"), v)
		w.approver = w.peopleSub.Leaf(testpki.Name("Bob Approver"), v)
		if r := w.trust().Verify(w.bundle(bundleOpts{}).input(testNow)); !r.Valid {
			t.Fatalf("refused: %v", r.Err())
		}
	})
	t.Run("fail registrar CA that is a people root re-issued", func(t *testing.T) {
		// same name and key, another serial and validity: the same CA to
		// x509.Verify, so it must not be on both sides
		w := newWorld(t)
		c := w.peopleRoot.Cert
		copyOf, err := pki.Issue(pki.Template{Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter.AddDate(1, 0, 0), IsCA: true, MaxPathLen: -1},
			w.peopleRoot.Key.Public(), nil, w.peopleRoot.Key)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = NewTrust(TrustOptions{People: []*x509.Certificate{c, w.peopleSub.Cert}, Registrar: []*x509.Certificate{copyOf}})
		if err == nil || !strings.Contains(err.Error(), "both a people CA and a Registrar CA") {
			t.Fatalf("NewTrust: %v", err)
		}
	})
	t.Run("fail registrar CA with a people root's key under another name", func(t *testing.T) {
		// whoever holds the people root's key could register images
		w := newWorld(t)
		reg := testpki.NewRoot(t, "Registrar Under Another Name", testpki.WithSigner(w.peopleRoot.Key))
		_, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}, Registrar: []*x509.Certificate{reg.Cert}})
		if err == nil || !strings.Contains(err.Error(), "both a people CA and a Registrar CA") {
			t.Fatalf("NewTrust: %v", err)
		}
	})
	t.Run("fail image certificate from a people CA the Registrar root cross-signed", func(t *testing.T) {
		// the cross-certificate, embedded in the signature, builds a chain
		// to a Registrar root through the people issuing CA's name and key
		w := newWorld(t)
		cross := w.regRoot.CrossSign(w.peopleSub)
		r := w.trust().Verify(w.bundle(bundleOpts{regCA: cross}).input(testNow))
		if r.Valid {
			t.Fatal("valid")
		}
		if got := r.Check(CheckRegistrar); got.OK || got.Reason != ReasonImageCertPeopleCA {
			t.Fatalf("registrar check: %+v", got)
		}
	})
	t.Run("fail creator revoked by the CRL of a re-keyed intermediate", func(t *testing.T) {
		// the trust store holds the issuing CA's old certificate; the
		// signature brings its new one, whose key signed the CRL
		w := newWorld(t)
		old := w.peopleRoot.Intermediate("People Issuing CA")
		b := w.bundle(bundleOpts{})
		rl := revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonKeyCompromise})
		cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
		adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
		tr, warns, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, old.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: [][]byte{rl}, VOs: map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{cdn}, Approvers: []DN{adn}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0], "kept for a chain CA") {
			t.Errorf("warnings: %q", warns)
		}
		r := tr.Verify(b.input(testNow))
		if r.Valid || r.Revocation == nil || r.Revocation.Cert.SerialNumber.Cmp(w.creator.Cert.SerialNumber) != 0 {
			t.Fatalf("valid %v, revocation %v: %v", r.Valid, r.Revocation, r.Err())
		}
	})
	t.Run("ok the CRL of a chain CA is counted in the revocation detail", func(t *testing.T) {
		// the issuing CA is not configured (the signature brings it); its
		// CRL is kept for it and used, so the detail counts it
		w := newWorld(t)
		b := w.bundle(bundleOpts{})
		rl := revokeCRL(w.peopleSub, 2)
		cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
		adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
		tr, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: [][]byte{rl}, VOs: map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{cdn}, Approvers: []DN{adn}}}})
		if err != nil {
			t.Fatal(err)
		}
		r := tr.Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
		}
		if got := r.Check(CheckRevocation).Detail; !strings.Contains(got, "(0 CRLs loaded, and 1 for sub-CAs)") {
			t.Fatalf("revocation detail %q", got)
		}
	})
	t.Run("fail intermediate revoked by an ARL beside a newer user-only CRL", func(t *testing.T) {
		// one CRL per CA and scope: the user-only CRL 6 does not replace
		// the CA-only CRL 5, in either order
		w := newWorld(t)
		b := w.bundle(bundleOpts{})
		arl := w.peopleRoot.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), IDP: pki.IDPOnlyCACerts,
			Entries: []pki.Revoked{{Serial: w.peopleSub.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -2), Reason: crl.ReasonKeyCompromise}}})
		user := w.peopleRoot.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), IDP: pki.IDPOnlyUserCerts})
		for _, crls := range [][][]byte{{arl, user}, {user, arl}} {
			w.crls = crls
			r := w.trust().Verify(b.input(testNow))
			if r.Valid || r.Revocation == nil || r.Revocation.Cert.SerialNumber.Cmp(w.peopleSub.Cert.SerialNumber) != 0 {
				t.Fatalf("valid %v, revocation %v", r.Valid, r.Revocation)
			}
		}
	})
	t.Run("fail require_crl with only a CA-only CRL for the signers' issuer", func(t *testing.T) {
		w := newWorld(t)
		b := w.bundle(bundleOpts{})
		w.requireCRL = true
		w.crls = [][]byte{
			w.peopleRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)}),
			w.peopleSub.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), IDP: pki.IDPOnlyCACerts}),
			w.regRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)}),
		}
		r := w.trust().Verify(b.input(testNow))
		if r.Valid || !strings.Contains(r.Err().Error(), "no CRL loaded") {
			t.Fatalf("valid %v: %v", r.Valid, r.Err())
		}
	})
}

// TestPersonalCertificates: creators and approvers sign with end-entity
// certificates whose key may make signatures.
func TestPersonalCertificates(t *testing.T) {
	v := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	for _, tc := range []struct {
		name    string
		creator func(w *world) *testpki.Leaf
		ok      bool
	}{
		{"ok digitalSignature", func(w *world) *testpki.Leaf {
			return w.peopleSub.Leaf(testpki.Name("Alice Creator"), v, testpki.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment))
		}, true},
		{"ok contentCommitment alone", func(w *world) *testpki.Leaf {
			return w.peopleSub.Leaf(testpki.Name("Alice Creator"), v, testpki.WithKeyUsage(x509.KeyUsageContentCommitment))
		}, true},
		{"fail keyEncipherment alone", func(w *world) *testpki.Leaf {
			return w.peopleSub.Leaf(testpki.Name("Alice Creator"), v, testpki.WithKeyUsage(x509.KeyUsageKeyEncipherment))
		}, false},
		{"fail a CA certificate", func(w *world) *testpki.Leaf {
			ca := w.peopleSub.Intermediate("Alice Creator", v)
			return &testpki.Leaf{Cert: ca.Cert, Key: ca.Key, Chain: []*x509.Certificate{w.peopleSub.Cert}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.creator = tc.creator(w)
			r := w.trust().Verify(w.bundle(bundleOpts{}).input(testNow))
			if r.Valid != tc.ok {
				t.Fatalf("valid %v: %v", r.Valid, r.Err())
			}
			if got := r.Check(CheckCreator); !tc.ok && (got.OK || got.Reason != ReasonCreatorUntrusted || !strings.Contains(got.Detail, "end-entity")) {
				t.Errorf("creator check %+v", got)
			}
		})
	}
}

// TestStaleCRLs: the trust store names its CRLs past nextUpdate (the
// commands log them when they load it), and still uses them.
func TestStaleCRLs(t *testing.T) {
	w := newWorld(t)
	w.crls = [][]byte{
		w.peopleRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -10), NextUpdate: testNow.AddDate(0, 0, -3)}),
		w.regRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 6)}),
	}
	tr := w.trust()
	got := tr.StaleCRLs(testNow)
	if len(got) != 1 || !strings.Contains(got[0], "People Root") || !strings.Contains(got[0], "nextUpdate") {
		t.Fatalf("stale: %q", got)
	}
	if got := tr.StaleCRLs(testNow.AddDate(0, 0, -5)); len(got) != 0 {
		t.Fatalf("stale five days earlier: %q", got)
	}
}

// TestTrustCRLsNotKept: a CRL refused for anything but who signed it (a
// delta CRL, here) is not kept for chain CAs, nor named as stale.
func TestTrustCRLsNotKept(t *testing.T) {
	w := newWorld(t)
	delta := w.peopleSub.CRL(pki.CRLTemplate{Number: 2, DeltaOf: 1, ThisUpdate: testNow.AddDate(0, 0, -10), NextUpdate: testNow.AddDate(0, 0, -3)})
	tr, warns, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
		CRLs: [][]byte{delta}})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "not used") || strings.Contains(warns[0], "kept") {
		t.Errorf("warnings %q", warns)
	}
	if got := tr.StaleCRLs(testNow); len(got) != 0 {
		t.Errorf("stale %q", got)
	}
}

// trustFiles writes a people root and a Registrar root to PEM files in a
// temporary directory and returns the people root, a function that writes
// a file there (returning its path), and the two files' paths.
func trustFiles(t *testing.T) (root *testpki.CA, write func(name string, b []byte) string, ca, rca string) {
	t.Helper()
	dir := t.TempDir()
	root = testpki.NewRoot(t, "People Root")
	reg := testpki.NewRoot(t, "Registrar Root")
	write = func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca = write("people.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	rca = write("reg.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.Cert.Raw}))
	return root, write, ca, rca
}

// TestLoadTrustCRLFiles: a CRL file named in trust.crl_files that is
// missing or does not parse is a configuration error naming the file: a
// typo must not turn revocation checking off with a warning only.
func TestLoadTrustCRLFiles(t *testing.T) {
	root, write, ca, rca := trustFiles(t)
	good := write("good.crl", root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour)}))
	corrupt := write("corrupt.crl", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	for _, c := range []struct {
		name  string
		files []string
		want  string
	}{
		{"ok present", []string{good}, ""},
		{"fail missing", []string{good, filepath.Join(filepath.Dir(ca), "registar.crl")}, "registar.crl"},
		{"fail corrupt", []string{corrupt}, "corrupt.crl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Trust.CAFiles, cfg.Trust.RegistrarCAFiles, cfg.Trust.CRLFiles = []string{ca}, []string{rca}, c.files
			_, _, err := LoadTrust(cfg)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "trust.crl_files")):
				t.Fatalf("error %v, want one naming trust.crl_files and %s", err, c.want)
			}
		})
	}
}

// TestReadCertificatesFIFO: a FIFO named as a CA file (trust.ca_files,
// trust.registrar_ca_files) is refused at once, not read until a writer
// comes: a daemon's start or reload would hang on it.
func TestReadCertificatesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skip("no FIFO here:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadCertificates(p); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), p) {
			t.Fatalf("error %v, want one naming the file as not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadCertificates blocks on a FIFO")
	}
}

// TestLoadTrustRefusesAnchorsWritableByOthers: whoever can write a CA
// file or a CA directory chooses whom the site trusts, so one that a user
// other than root and the test's could change (or replace: a directory on
// its way, up to /, writable by its group or every user, without the
// sticky bit) stops the start or the reload, naming the setting, the file
// or directory, its mode and owner, and what to change
// (fsutil.CheckNotWritableByOthers). A CRL file so exposed is still used
// (it is signed: only an older list of the same CA could take its place),
// with a warning.
func TestLoadTrustRefusesAnchorsWritableByOthers(t *testing.T) {
	// no group is a user private group here (fsutil's TestUserPrivateGroup
	// has that rule): group-writable cases are refused whatever the
	// machine's groups
	saved := fsutil.AccountFiles
	t.Cleanup(func() { fsutil.AccountFiles = saved })
	fsutil.AccountFiles.Passwd, fsutil.AccountFiles.Group = "/nonexistent/passwd", "/nonexistent/group"
	root := testpki.NewRoot(t, "People Root")
	reg := testpki.NewRoot(t, "Registrar Root")
	crlBytes := root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour)})
	for _, c := range []struct {
		name     string
		mode     map[string]os.FileMode // file (or "dir", "cadir") -> mode
		want     string                 // error substring
		wantWarn string
	}{
		{name: "ok 0644 files, 0755 directories", mode: map[string]os.FileMode{}},
		{name: "ok CA files in a sticky 1777 directory", mode: map[string]os.FileMode{"dir": 0o1777}},
		{name: "fail people CA file 0666", mode: map[string]os.FileMode{"people.pem": 0o666},
			want: "trust.ca_files: %s/people.pem: a user other than root and the one this runs as could change whom this site trusts: writable by every user (mode 0666, owner "},
		{name: "fail registrar CA file 0646", mode: map[string]os.FileMode{"reg.pem": 0o646}, want: "trust.registrar_ca_files: %s/reg.pem: a user other than root and the one this runs as could change whom this site trusts: writable by every user (mode 0646"},
		{name: "fail people CA file 0664", mode: map[string]os.FileMode{"people.pem": 0o664}, want: "trust.ca_files: %[1]s/people.pem: a user other than root and the one this runs as could change whom this site trusts: writable by group "},
		{name: "fail CA files in a 0777 directory", mode: map[string]os.FileMode{"dir": 0o777}, want: "trust.ca_files: %[1]s/people.pem: a user other than root and the one this runs as could change whom this site trusts: directory %[1]s is writable by every user (mode 0777"},
		{name: "fail CA files in a 0775 directory", mode: map[string]os.FileMode{"dir": 0o775}, want: "trust.ca_files: %[1]s/people.pem: a user other than root and the one this runs as could change whom this site trusts: directory %[1]s is writable by group "},
		{name: "fail CA directory 0777", mode: map[string]os.FileMode{"cadir": 0o777}, want: "trust.ca_dirs %s/cadir: a user other than root and the one this runs as could add a CA to it: writable by every user (mode 0777"},
		{name: "fail CA directory 1777 (anyone may add a CA)", mode: map[string]os.FileMode{"cadir": 0o1777}, want: "trust.ca_dirs %s/cadir: a user other than root and the one this runs as could add a CA to it: writable by every user (mode 1777"},
		{name: "fail CA directory 0775", mode: map[string]os.FileMode{"cadir": 0o775}, want: "trust.ca_dirs %[1]s/cadir: a user other than root and the one this runs as could add a CA to it: writable by group "},
		{name: "fail CA files under a 0777 directory (renamed away, another put in its place)", mode: map[string]os.FileMode{"top": 0o777},
			want: "trust.ca_files: %[1]s/people.pem: a user other than root and the one this runs as could change whom this site trusts: directory %[2]s is writable by every user (mode 0777"},
		{name: "ok CRL file 0666 is used, with a warning", mode: map[string]os.FileMode{"people.crl": 0o666}, wantWarn: "CRL %s/people.crl: used, but a user other than root and the one this runs as could replace it with an older list: writable by every user (mode 0666"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cadir := filepath.Join(dir, "cadir")
			if err := os.Mkdir(cadir, 0o755); err != nil {
				t.Fatal(err)
			}
			write := func(d, name string, b []byte) string {
				p := filepath.Join(d, name)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			ca := write(dir, "people.pem", testpki.CertPEM(root.Cert))
			rca := write(dir, "reg.pem", testpki.CertPEM(reg.Cert))
			crlFile := write(dir, "people.crl", crlBytes)
			write(cadir, hashName(t, root.Cert, "0"), testpki.CertPEM(root.Cert))
			write(cadir, hashName(t, root.Cert, "namespaces"), permitAll(t, root.Cert))
			top := filepath.Dir(dir)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o755); _ = os.Chmod(cadir, 0o755); _ = os.Chmod(top, 0o700) })
			for name, m := range c.mode {
				p := filepath.Join(dir, name)
				switch name {
				case "dir":
					p = dir
				case "cadir":
					p = cadir
				case "top":
					p = top
				}
				if m&0o1000 != 0 {
					m = m&0o777 | os.ModeSticky
				}
				if err := os.Chmod(p, m); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &config.Config{}
			cfg.Trust.CAFiles, cfg.Trust.RegistrarCAFiles, cfg.Trust.CRLFiles, cfg.Trust.CADirs = []string{ca}, []string{rca}, []string{crlFile}, []string{cadir}
			_, warns, err := LoadTrust(cfg)
			want := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(c.want, "%s", dir), "%[1]s", dir), "%[2]s", top)
			switch {
			case want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("error %v, want one containing %q", err, want)
			}
			if c.wantWarn != "" {
				ww := strings.ReplaceAll(c.wantWarn, "%s", dir)
				if len(warns) != 1 {
					t.Fatalf("warnings %q, want one", warns)
				}
				found := false
				for _, w := range warns {
					found = found || strings.Contains(w, ww)
				}
				if !found {
					t.Fatalf("warnings %q, want one containing %q", warns, ww)
				}
			}
		})
	}
}

// TestLoadTrustAnchorCheckFails: when the owner and modes of a CA file
// that was read cannot be checked (here /proc/self/fd/N of a deleted file:
// the kernel reads it, its link text names no file), the error says so;
// it does not claim that another user could change the file.
func TestLoadTrustAnchorCheckFails(t *testing.T) {
	root := testpki.NewRoot(t, "People Root")
	f, err := os.Create(filepath.Join(t.TempDir(), "people.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(testpki.CertPEM(root.Cert)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Name()); err != nil {
		t.Fatal(err)
	}
	p := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if _, err := ReadCertificates(p); err != nil {
		t.Skipf("%s cannot be read here: %v", p, err)
	}
	cfg := &config.Config{}
	cfg.Trust.CAFiles = []string{p}
	_, _, err = LoadTrust(cfg)
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "could change") || !strings.Contains(err.Error(), "its owner and mode could not be checked: ") {
		t.Fatalf("got %v, want its owner and mode could not be checked", err)
	}
}

// TestLoadTrustFutureCRL: a CRL whose thisUpdate lies beyond now plus
// crl.clock_skew (a CA whose clock runs ahead) is used by the sync, the
// proxy and `imagetrust verify` (LoadTrust) for its revocations, with a
// warning naming its thisUpdate (crl.Index.KeepFuture: its date outranks
// no other CRL of the CA, TestFutureCRLRevokes); one within the skew is
// used without a warning.
func TestLoadTrustFutureCRL(t *testing.T) {
	root, write, ca, rca := trustFiles(t)
	for _, c := range []struct {
		name  string
		ahead time.Duration
		used  bool // (warned)
	}{
		{"ok a minute ahead, within the skew", time.Minute, false},
		{"ok a day ahead: used, with a warning", 24 * time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tu := time.Now().Add(c.ahead)
			f := write("ahead.crl", root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: tu, NextUpdate: tu.Add(24 * time.Hour)}))
			cfg := &config.Config{}
			cfg.Trust.CAFiles, cfg.Trust.RegistrarCAFiles, cfg.Trust.CRLFiles = []string{ca}, []string{rca}, []string{f}
			cfg.CRL.ClockSkew.Duration = config.DefaultClockSkew
			tr, warns, err := LoadTrust(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.crls.CRLs()) != 1 {
				t.Fatalf("not used; warnings %q", warns)
			}
			if warned := strings.Contains(strings.Join(warns, "\n"), "thisUpdate"); warned != c.used {
				t.Fatalf("warning about its thisUpdate %v, want %v: %q", warned, c.used, warns)
			}
		})
	}
}

// TestStaleCRLsWithoutNextUpdate: the stale warning of the sync, the proxy
// and `imagetrust verify` names a CRL without nextUpdate once it is older
// than TrustOptions.MaxAge (crl.no_next_update_max_age; crl.DefaultMaxAge
// when unset), as the CRL job judges it; it never named one.
func TestStaleCRLsWithoutNextUpdate(t *testing.T) {
	root := testpki.NewRoot(t, "People Root")
	reg := testpki.NewRoot(t, "Registrar Root")
	der := root.CRLWithoutNextUpdate(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.Add(-crl.DefaultMaxAge - time.Hour)})
	for _, c := range []struct {
		name   string
		maxAge time.Duration
		stale  bool
	}{
		{"fail past the default maximum age", 0, true},
		{"ok within a longer configured maximum age", 2 * crl.DefaultMaxAge, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, warns, err := NewTrust(TrustOptions{People: []*x509.Certificate{root.Cert}, Registrar: []*x509.Certificate{reg.Cert}, CRLs: [][]byte{der}, MaxAge: c.maxAge})
			if err != nil || len(warns) > 0 || len(tr.crls.CRLs()) != 1 {
				t.Fatalf("%v %q", err, warns)
			}
			got := tr.StaleCRLs(testNow)
			if (len(got) == 1 && strings.Contains(got[0], "no nextUpdate")) != c.stale || !c.stale && len(got) > 0 {
				t.Fatalf("StaleCRLs: %q", got)
			}
		})
	}
}

// TestFutureCRLRevokes: a CRL whose thisUpdate lies beyond now plus the
// clock skew (its CA's clock runs ahead) was dropped by the verifier's
// trust store (f67a9fc): the sync, the proxy and `imagetrust verify`,
// which keep no previous CRL of the CA as the CRL job does, then saw none
// of its revocations until a reload past its date (fail open without
// require_crl; every image of the CA refused with it). Such a CRL is now
// used for what it lists, for a configured CA and for a sub-CA the
// signatures bring, but its date outranks no CRL of the CA dated in time:
// it lifts none of their holds.
func TestFutureCRLRevokes(t *testing.T) {
	ahead := testNow.Add(24 * time.Hour)
	verify := func(t *testing.T, w *world, requireCRL bool, crls ...[]byte) *Result {
		t.Helper()
		b := w.bundle(bundleOpts{})
		people := []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}
		if w.rootsOnly {
			people = people[:1]
		}
		tr, warns, err := NewTrust(TrustOptions{
			People: people, Registrar: []*x509.Certificate{w.regRoot.Cert}, CRLs: crls, VOs: w.trust().vos,
			RequireCRL: requireCRL, Now: testNow, ClockSkew: 5 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(warns, "\n"), "clock skew") {
			t.Errorf("no warning of the CRL dated ahead: %q", warns)
		}
		return tr.Verify(b.input(testNow))
	}
	// the people root's and the Registrar CA's CRLs, dated in time
	rootCRLs := func(w *world) [][]byte {
		tmpl := pki.CRLTemplate{Number: 1, ThisUpdate: testNow.Add(-time.Hour), NextUpdate: testNow.AddDate(0, 0, 7)}
		return [][]byte{w.peopleRoot.CRL(tmpl), w.regRoot.CRL(tmpl)}
	}
	for _, rootsOnly := range []bool{false, true} {
		for _, requireCRL := range []bool{false, true} {
			t.Run(fmt.Sprintf("fail the creator revoked in a CRL dated a day ahead (sub-CA configured %v, require_crl %v)", !rootsOnly, requireCRL), func(t *testing.T) {
				w := newWorld(t)
				w.rootsOnly = rootsOnly
				e := pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, -1, 0), Reason: crl.ReasonKeyCompromise}
				sub := w.peopleSub.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: ahead, NextUpdate: ahead.AddDate(0, 0, 7), Entries: []pki.Revoked{e}})
				r := verify(t, w, requireCRL, append(rootCRLs(w), sub)...)
				if r.Valid || r.Revocation == nil || r.Revocation.Reason != crl.ReasonKeyCompromise {
					t.Fatalf("valid %v, revocation %+v: %v", r.Valid, r.Revocation, r.Err())
				}
			})
		}
		t.Run(fmt.Sprintf("ok a CRL dated ahead that lists nothing meets require_crl (sub-CA configured %v)", !rootsOnly), func(t *testing.T) {
			w := newWorld(t)
			w.rootsOnly = rootsOnly
			sub := w.peopleSub.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: ahead, NextUpdate: ahead.AddDate(0, 0, 7)})
			if r := verify(t, w, true, append(rootCRLs(w), sub)...); !r.Valid {
				t.Fatal(r.Err())
			}
		})
		t.Run(fmt.Sprintf("fail a complete CRL dated ahead does not lift the hold of a user-only CRL dated in time (sub-CA configured %v)", !rootsOnly), func(t *testing.T) {
			w := newWorld(t)
			w.rootsOnly = rootsOnly
			e := pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.Add(-2 * time.Hour), Reason: crl.ReasonCertificateHold}
			complete := w.peopleSub.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: ahead, NextUpdate: ahead.AddDate(0, 0, 7)})
			users := w.peopleSub.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.Add(-time.Hour), NextUpdate: testNow.AddDate(0, 0, 7), IDP: pki.IDPOnlyUserCerts, Entries: []pki.Revoked{e}})
			r := verify(t, w, false, append(rootCRLs(w), complete, users)...)
			if r.Valid || r.Revocation == nil || r.Revocation.Reason != crl.ReasonCertificateHold {
				t.Fatalf("valid %v, revocation %+v", r.Valid, r.Revocation)
			}
		})
	}
}
