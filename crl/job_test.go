package crl

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/prometheus/client_golang/prometheus"
)

// memCatalog is an in-memory Catalog. It stands in for Glance in these unit
// tests only (the job logic, not the Glance calls); the Glance integration
// test against the real Keystone and Glance lives with cmd/imagetrust.
type memCatalog struct {
	mu     sync.Mutex
	images map[string]*Image
	writes int
	// fail makes the next fail[op] calls of op ("set", "deactivate",
	// "reactivate", "get") fail, as Glance may (a 413 for a full property quota, a
	// 503)
	fail map[string]int
}

// failing reports whether this call of op is to fail (m.mu held).
func (m *memCatalog) failing(op string) error {
	if m.fail[op] > 0 {
		m.fail[op]--
		return fmt.Errorf("injected %s failure", op)
	}
	return nil
}

func (m *memCatalog) List(context.Context) ([]Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Image
	for _, img := range m.images {
		c := *img
		c.Properties = map[string]string{}
		for k, v := range img.Properties {
			c.Properties[k] = v
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Image) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out, nil
}

func (m *memCatalog) SetProperties(_ context.Context, id string, set map[string]string, remove []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failing("set"); err != nil {
		return err
	}
	m.writes++
	for k, v := range set {
		m.images[id].Properties[k] = v
	}
	for _, k := range remove {
		delete(m.images[id].Properties, k)
	}
	return nil
}

func (m *memCatalog) status(id, from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	op := map[string]string{StatusDeactivated: "deactivate", StatusActive: "reactivate"}[to]
	if err := m.failing(op); err != nil {
		return err
	}
	m.writes++
	if m.images[id].Status != from {
		return fmt.Errorf("image %s is %s, not %s", id, m.images[id].Status, from)
	}
	m.images[id].Status = to
	return nil
}

func (m *memCatalog) Deactivate(_ context.Context, id string) error {
	return m.status(id, StatusActive, StatusDeactivated)
}

func (m *memCatalog) Reactivate(_ context.Context, id string) error {
	return m.status(id, StatusDeactivated, StatusActive)
}

func (m *memCatalog) Get(_ context.Context, id string) (Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failing("get"); err != nil {
		return Image{}, err
	}
	img, ok := m.images[id]
	if !ok {
		return Image{}, ErrImageGone
	}
	c := *img
	c.Properties = maps.Clone(img.Properties)
	return c, nil
}

func (m *memCatalog) get(id string) Image {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.images[id]
}

func (m *memCatalog) takeWrites() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.writes
	m.writes = 0
	return n
}

// world is a PKI, a catalogue of three images and a CRL server.
type world struct {
	root, people, registrar, otherCA *testpki.CA
	creator1, creator2, approver     *testpki.Leaf
	cat                              *memCatalog
	srv                              *httptest.Server
	mu                               sync.Mutex
	body                             []byte // what the CRL server serves
	status                           int    // HTTP status to answer (0: 200)
	delay                            time.Duration
	requests, notModified            atomic.Int32
}

const regTime = "2026-05-01T00:00:00Z"

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{root: testpki.NewRoot(t, "Job Root")}
	w.people = w.root.Intermediate("Job People CA")
	w.registrar = w.root.Intermediate("Job Registrar CA")
	w.otherCA = w.root.Intermediate("Job Other CA")
	w.creator1 = w.people.Leaf(testpki.Name("Creator One"), testpki.WithSerial(101))
	w.creator2 = w.people.Leaf(testpki.Name("Creator Two"), testpki.WithSerial(102))
	w.approver = w.people.Leaf(testpki.Name("Approver"), testpki.WithSerial(103))
	w.cat = &memCatalog{images: map[string]*Image{}}
	add := func(id string, imageSerial int64, creator *testpki.Leaf) {
		ref := func(role string, c *testpki.CA, serial *big.Int) ChainCert {
			return ChainCert{Role: role, Issuer: c.Cert.Subject.String(), Serial: serial.Text(16), AKI: hex.EncodeToString(c.Cert.SubjectKeyId)}
		}
		chain := []ChainCert{
			ref("image", w.registrar, big.NewInt(imageSerial)), ref("image-ca", w.root, w.registrar.Cert.SerialNumber),
			ref("creator", w.people, creator.Cert.SerialNumber), ref("creator-ca", w.root, w.people.Cert.SerialNumber),
			ref("approver", w.people, w.approver.Cert.SerialNumber), ref("approver-ca", w.root, w.people.Cert.SerialNumber),
		}
		cj, _ := json.Marshal(chain)
		w.cat.images[id] = &Image{ID: id, Status: StatusActive, Properties: map[string]string{
			PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime, PropGlobalValidity: StateValid}}
	}
	add("img-1", 11, w.creator1)
	add("img-2", 12, w.creator1)
	add("img-3", 13, w.creator2)
	w.cat.images["alias"] = &Image{ID: "alias", Status: "queued", Properties: map[string]string{PropRecordVersion: "1", PropAlias: "vo/tag"}}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.requests.Add(1)
		w.mu.Lock()
		body, status, delay := w.body, w.status, w.delay
		w.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 {
			rw.WriteHeader(status)
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.notModified.Add(1)
			rw.WriteHeader(http.StatusNotModified)
			return
		}
		rw.Header().Set("ETag", etag)
		_, _ = rw.Write(body)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) serve(body []byte, status int, delay time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.body, w.status, w.delay = body, status, delay
}

// job builds a job over the world's catalogue with one HTTP source and the
// given cache directory, its clock at now.
func (w *world) job(t *testing.T, cache string, now time.Time, refuseStale bool) *Job {
	t.Helper()
	cfg := JobConfig{
		CAs:       []*x509.Certificate{w.root.Cert, w.people.Cert, w.registrar.Cert, w.otherCA.Cert},
		Sources:   []Source{{URL: w.srv.URL + "/registrar.crl"}},
		CacheDir:  cache,
		Policy:    Policy{RefuseStale: refuseStale, Grace: time.Hour},
		ClockSkew: 5 * time.Minute,
		Timeout:   300 * time.Millisecond,
		Retries:   1,
	}
	j := NewJob(cfg, w.cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	j.Now = func() time.Time { return now }
	return j
}

func run(t *testing.T, j *Job) *Report {
	t.Helper()
	rep, err := j.Run(context.Background(), false)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

func crlT(ca *testpki.CA, n int64, entries ...pki.Revoked) []byte {
	return ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), Entries: entries})
}

func TestJobRevokeOneImage(t *testing.T) {
	w := newWorld(t)
	j := w.job(t, t.TempDir(), t0, true)
	w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}), 0, 0)
	rep := run(t, j)
	img := w.cat.get("img-1")
	if img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateRevoked ||
		img.Properties[PropRevReason] != "keyCompromise" || img.Properties[PropRevCRLNumber] != "1" ||
		img.Properties[PropRevokedRole] != "image" || img.Properties[PropRevDate] != t0.Add(-2*time.Hour).Format(time.RFC3339) {
		t.Fatalf("img-1: %+v", img)
	}
	for _, id := range []string{"img-2", "img-3"} {
		if img := w.cat.get(id); img.Status != StatusActive || img.Properties[PropGlobalValidity] != StateValid {
			t.Fatalf("%s changed: %+v", id, img)
		}
	}
	if n := w.cat.takeWrites(); n != 2 || rep.Writes != 2 || len(rep.Changes) != 1 || rep.Images != 3 {
		t.Fatalf("writes %d (report %d), changes %+v", n, rep.Writes, rep.Changes)
	}
	if len(rep.CRLs) != 1 || rep.CRLs[0].Number != "1" || rep.CRLs[0].Issuer != w.registrar.Cert.Subject.String() {
		t.Fatalf("CRLs used: %+v", rep.CRLs)
	}
	rep = run(t, j)
	if n := w.cat.takeWrites(); n != 0 || len(rep.Changes) != 0 {
		t.Fatalf("second run: %d writes, changes %+v", n, rep.Changes)
	}
	if w.notModified.Load() != 1 {
		t.Fatalf("second fetch was not conditional (304s: %d)", w.notModified.Load())
	}
	// A fresh job (a new process) reads the cache and makes no writes either.
	rep = run(t, w.job(t, j.cfg.CacheDir, t0, true))
	if n := w.cat.takeWrites(); n != 0 || len(rep.Changes) != 0 {
		t.Fatalf("new process: %d writes, changes %+v", n, rep.Changes)
	}
}

func TestJobHoldThenRelease(t *testing.T) {
	for _, release := range []string{"gone from a newer CRL", "removeFromCRL"} {
		t.Run("ok "+release, func(t *testing.T) {
			w := newWorld(t)
			j := w.job(t, t.TempDir(), t0, true)
			w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
			run(t, j)
			img := w.cat.get("img-2")
			if img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateHold || img.Properties[PropDeactivatedBy] != DeactivatedByHold {
				t.Fatalf("held image: %+v", img)
			}
			w.cat.takeWrites()
			// An operator-flagged image held at the same time is never reactivated by the job.
			w.cat.images["img-3"].Status = StatusDeactivated
			w.cat.images["img-3"].Properties[PropLocalValidity] = "blacklist"
			w.cat.images["img-3"].Properties[PropDeactivatedBy] = DeactivatedByHold
			next := crlT(w.registrar, 2)
			if release == "removeFromCRL" {
				next = crlT(w.registrar, 2, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonRemoveFromCRL})
			}
			w.serve(next, 0, 0)
			run(t, j)
			img = w.cat.get("img-2")
			if img.Status != StatusActive || img.Properties[PropGlobalValidity] != StateValid || img.Properties[PropDeactivatedBy] != "" || img.Properties[PropRevReason] != "" {
				t.Fatalf("released image: %+v", img)
			}
			if img := w.cat.get("img-3"); img.Status != StatusDeactivated {
				t.Fatalf("operator-flagged image reactivated: %+v", img)
			}
			if n := w.cat.takeWrites(); n != 2 {
				t.Fatalf("%d writes, want 2 (properties, reactivate)", n)
			}
		})
	}
}

func TestJobCreatorRevoked(t *testing.T) {
	w := newWorld(t)
	j := w.job(t, t.TempDir(), t0, true)
	j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "people.crl",
		crlT(w.people, 1, pki.Revoked{Serial: w.creator1.Cert.SerialNumber, Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}))})
	w.serve(crlT(w.registrar, 1), 0, 0)
	run(t, j)
	for id, want := range map[string]string{"img-1": StateRevoked, "img-2": StateRevoked, "img-3": StateValid} {
		img := w.cat.get(id)
		if img.Properties[PropGlobalValidity] != want || (want == StateRevoked) != (img.Status == StatusDeactivated) {
			t.Fatalf("%s: %+v, want %s", id, img, want)
		}
		if want == StateRevoked && img.Properties[PropRevokedRole] != "creator" {
			t.Fatalf("%s: revoked role %q", id, img.Properties[PropRevokedRole])
		}
	}
	// Never reactivated: not even when the creator's revocation disappears.
	j.cfg.Sources = j.cfg.Sources[:1]
	j.cfg.CacheDir = t.TempDir()
	run(t, j)
	if img := w.cat.get("img-1"); img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateRevoked {
		t.Fatalf("revoked image came back: %+v", img)
	}
}

// TestJobHostile: after a good run (CRL 5: image 11 revoked, image 12 held),
// each hostile CRL or server failure is refused with its reason, the last
// good CRL stays in use, and no image changes. Every hostile CRL is empty:
// accepted, it would release the hold on image 12.
func TestJobHostile(t *testing.T) {
	w0 := newWorld(t)
	twin := testpki.NewRoot(t, "Job Registrar CA") // same name as the registrar CA, other key
	untrusted := testpki.NewRoot(t, "Untrusted CA")
	good := crlT(w0.registrar, 5, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold})
	badSig := append([]byte{}, crlT(w0.registrar, 6)...)
	badSig[len(badSig)-3] ^= 0x01
	empty6 := crlT(w0.registrar, 6)
	tests := []struct {
		name   string
		body   []byte
		status int
		delay  time.Duration
		down   bool
		reason string
	}{
		{"fail untrusted signer", crlT(untrusted, 6), 0, 0, false, ReasonWrongIssuer},
		{"fail same name, other key", twin.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: t0.Add(-time.Hour)}), 0, 0, false, ReasonWrongIssuer},
		{"fail bad signature", badSig, 0, 0, false, ReasonSignature},
		{"fail truncated", empty6[:len(empty6)-20], 0, 0, false, ReasonParse},
		{"fail garbage", []byte("<html>captive portal</html>"), 0, 0, false, ReasonParse},
		{"fail thisUpdate in the future", w0.registrar.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: t0.Add(time.Hour)}), 0, 0, false, ReasonFuture},
		{"fail rollback", crlT(w0.registrar, 4), 0, 0, false, ReasonRollback},
		{"fail same number, other content", crlT(w0.registrar, 5), 0, 0, false, ReasonRollback},
		{"fail delta CRL", w0.registrar.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: t0.Add(-time.Hour), DeltaOf: 5}), 0, 0, false, ReasonDelta},
		{"fail server error", nil, http.StatusInternalServerError, 0, false, ReasonFetch},
		{"fail not found", nil, http.StatusNotFound, 0, false, ReasonFetch},
		{"fail slow server", good, 0, 2 * time.Second, false, ReasonFetch},
		{"fail server down", nil, 0, 0, true, ReasonFetch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			// the world's PKI must be the one the hostile CRLs were made for
			w.root, w.people, w.registrar, w.otherCA = w0.root, w0.people, w0.registrar, w0.otherCA
			w.cat = w0.cloneCatalog()
			cache := t.TempDir()
			w.serve(good, 0, 0)
			run(t, w.job(t, cache, t0, true))
			if img := w.cat.get("img-2"); img.Properties[PropGlobalValidity] != StateHold {
				t.Fatalf("setup: img-2 %+v", img)
			}
			w.cat.takeWrites()
			w.serve(tc.body, tc.status, tc.delay)
			if tc.down {
				w.srv.Close()
			}
			j := w.job(t, cache, t0.Add(time.Minute), true)
			j.http.HTTPClient.Transport = &http.Transport{DisableKeepAlives: true} // don't reuse the setup's connection
			rep := run(t, j)
			if len(rep.Refused) != 1 || rep.Refused[0].Reason != tc.reason {
				t.Fatalf("refused %+v, want reason %s", rep.Refused, tc.reason)
			}
			if n := w.cat.takeWrites(); n != 0 || len(rep.Changes) != 0 {
				t.Fatalf("%d writes, changes %+v", n, rep.Changes)
			}
			if len(rep.CRLs) != 1 || rep.CRLs[0].Number != "5" {
				t.Fatalf("CRLs used %+v, want the last good one (5)", rep.CRLs)
			}
		})
	}
}

func (w *world) cloneCatalog() *memCatalog {
	c := &memCatalog{images: map[string]*Image{}}
	for id, img := range w.cat.images {
		n := *img
		n.Properties = map[string]string{}
		for k, v := range img.Properties {
			n.Properties[k] = v
		}
		c.images[id] = &n
	}
	return c
}

func TestJobOtherCASameSerial(t *testing.T) {
	w := newWorld(t)
	j := w.job(t, t.TempDir(), t0, true)
	// the other CA revokes serial 11, the serial of img-1's image certificate
	w.serve(crlT(w.otherCA, 1, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}), 0, 0)
	rep := run(t, j)
	if n := w.cat.takeWrites(); n != 0 || len(rep.Changes) != 0 || len(rep.Refused) != 0 {
		t.Fatalf("%d writes, changes %+v, refused %+v", n, rep.Changes, rep.Refused)
	}
}

func TestJobStale(t *testing.T) {
	later := t0.Add(7*24*time.Hour + 2*time.Hour) // past nextUpdate + grace
	tests := []struct {
		name        string
		refuseStale bool
		img3        string
		writes      int
	}{
		{"ok stale under warn: nothing changes", false, StateValid, 0},
		{"fail stale under refuse: valid images become unknown, not deactivated", true, StateUnknown, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cache := t.TempDir()
			w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
			run(t, w.job(t, cache, t0, tc.refuseStale))
			w.cat.takeWrites()
			w.serve(nil, http.StatusServiceUnavailable, 0)
			rep := run(t, w.job(t, cache, later, tc.refuseStale))
			if n := w.cat.takeWrites(); n != tc.writes {
				t.Fatalf("%d writes, want %d: %+v", n, tc.writes, rep.Changes)
			}
			img3 := w.cat.get("img-3")
			if img3.Properties[PropGlobalValidity] != tc.img3 || img3.Status != StatusActive {
				t.Fatalf("img-3: %+v", img3)
			}
			if w.cat.get("img-1").Properties[PropGlobalValidity] != StateRevoked || w.cat.get("img-2").Properties[PropGlobalValidity] != StateHold {
				t.Fatal("a stale CRL must still prove its revocations")
			}
			if len(rep.CRLs) != 1 || !rep.CRLs[0].Stale || len(rep.Warnings) == 0 {
				t.Fatalf("report: %+v", rep)
			}
			// fresh again: back to the computed state
			w.serve(crlT(w.registrar, 2, pki.Revoked{Serial: big.NewInt(11), Reason: ReasonKeyCompromise}, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
			j := w.job(t, cache, later, tc.refuseStale)
			j.Now = func() time.Time { return t0.Add(time.Hour) }
			run(t, j)
			if img3 := w.cat.get("img-3"); img3.Properties[PropGlobalValidity] != StateValid {
				t.Fatalf("img-3 after a fresh CRL: %+v", img3)
			}
		})
	}
}

func TestPlanRevokedIsFinal(t *testing.T) {
	img := Image{ID: "x", Status: StatusDeactivated, Properties: map[string]string{PropGlobalValidity: StateRevoked, PropDeactivatedBy: DeactivatedByHold}}
	for _, s := range []string{StateValid, StateHold, StateUnknown} {
		if ch := Plan(img, s, nil, "test"); ch != nil {
			t.Fatalf("revoked image planned to %s: %+v", s, ch)
		}
	}
	img.Status = StatusActive
	if ch := Plan(img, StateValid, nil, "test"); ch == nil || !ch.Deactivate || ch.Reactivate || len(ch.Set) != 0 {
		t.Fatalf("active revoked image: %+v", ch)
	}
}

func TestJobIGTFDir(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "abcd1234.0", testpki.CertPEM(w.registrar.Cert))
	testpki.WriteFile(t, dir, "abcd1234.r0", crlT(w.registrar, 3, pki.Revoked{Serial: big.NewInt(13), Reason: ReasonSuperseded}))
	testpki.WriteFile(t, dir, "abcd1234.signing_policy", []byte("not a CRL"))
	j := w.job(t, t.TempDir(), t0, true)
	j.cfg.CAs = []*x509.Certificate{w.root.Cert} // the registrar CA comes from the directory
	j.cfg.Sources = []Source{{Dir: dir}}
	rep := run(t, j)
	if img := w.cat.get("img-3"); img.Properties[PropGlobalValidity] != StateRevoked || img.Properties[PropRevReason] != "superseded" {
		t.Fatalf("img-3: %+v (report %+v)", img, rep)
	}
}

// TestJobScopedCRLs: a CA publishing a CA-only CRL (an ARL) and a
// user-only CRL, numbered apart as RFC 5280 allows: both are used, each is
// cached with its own rollback state, and a later run whose fetch of one
// fails falls back to that one's cached copy.
func TestJobScopedCRLs(t *testing.T) {
	w := newWorld(t)
	w.serve(crlT(w.registrar, 1), 0, 0)
	dir, cache := t.TempDir(), t.TempDir()
	arlFile, userFile := dir+"/root-arl.crl", dir+"/root-user.crl"
	write := func(path string, der []byte) {
		if err := os.WriteFile(path, der, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	arl := w.root.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPOnlyCACerts,
		Entries: []pki.Revoked{{Serial: w.registrar.Cert.SerialNumber, Time: t0.Add(-2 * time.Hour), Reason: ReasonCACompromise}}})
	user := func(n int64) []byte {
		return w.root.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPOnlyUserCerts})
	}
	write(arlFile, arl)
	write(userFile, user(6))
	job := func() *Job {
		j := w.job(t, cache, t0, true)
		j.cfg.Sources = append(j.cfg.Sources, Source{File: arlFile}, Source{File: userFile})
		return j
	}
	rootCRLs := func(rep *Report) (out []string) {
		for _, c := range rep.CRLs {
			if c.Issuer == w.root.Cert.Subject.String() {
				out = append(out, c.Number+" "+c.Source)
			}
		}
		slices.Sort(out)
		return out
	}
	rep := run(t, job())
	if got := rootCRLs(rep); len(got) != 2 || len(rep.Refused) != 0 {
		t.Fatalf("root CRLs used %q, refused %+v", got, rep.Refused)
	}
	for _, id := range []string{"img-1", "img-2", "img-3"} {
		if img := w.cat.get(id); img.Properties[PropGlobalValidity] != StateRevoked || img.Properties[PropRevokedRole] != "ca" {
			t.Fatalf("%s not revoked by the ARL: %+v", id, img.Properties)
		}
	}
	// a new process: the ARL's source is gone, its cached copy stands in
	if err := os.Remove(arlFile); err != nil {
		t.Fatal(err)
	}
	rep = run(t, job())
	if got := rootCRLs(rep); len(got) != 2 || got[0] != "5 cache:"+arlFile {
		t.Fatalf("root CRLs used %q", got)
	}
	// the user-only CRL's own rollback state: 4 after 6 is refused, while
	// the ARL's 5 is no rollback of it
	write(arlFile, arl)
	write(userFile, user(4))
	rep = run(t, job())
	if len(rep.Refused) != 1 || rep.Refused[0].Source != userFile || rep.Refused[0].Reason != ReasonRollback {
		t.Fatalf("refused %+v", rep.Refused)
	}
}

// TestJobScopeChanges: CRLs of one CA with other issuingDistributionPoints
// stay side by side and are all searched; the newest of a certificate's
// kind decides whether its state is stale, so a scope the CA abandoned (an
// old URL, a user-only CRL) does not turn its images unknown, nor does an
// old CRL of another scope make a stale CA fresh. Under RequireCRL, a
// CA-only CRL does not count for an image certificate.
func TestJobScopeChanges(t *testing.T) {
	later := t0.Add(10 * 24 * time.Hour) // the first CRLs' nextUpdate is t0+7d
	t.Run("ok distribution point moves", func(t *testing.T) {
		w := newWorld(t)
		cache := t.TempDir()
		w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://a.example/r.crl")}), 0, 0)
		run(t, w.job(t, cache, t0, true))
		w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: later.Add(-time.Hour), NextUpdate: later.Add(7 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://b.example/r.crl")}), 0, 0)
		rep := run(t, w.job(t, cache, later, true))
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateValid {
			t.Fatalf("img-1 %s: %+v", img.Properties[PropGlobalValidity], rep.CRLs)
		}
		// the old URL's CRL is still searched and, as which certificates
		// each URL's CRL speaks for is not known, still warned of as stale
		// (until the operator removes it from the cache)
		if len(rep.CRLs) != 2 || rep.CRLs[0].Superseded || len(rep.Warnings) != 1 {
			t.Errorf("CRLs %+v, warnings %q", rep.CRLs, rep.Warnings)
		}
	})
	t.Run("fail CRLs of two distribution points, the revocation in the older", func(t *testing.T) {
		w := newWorld(t)
		w.serve(crlT(w.registrar, 1), 0, 0)
		j := w.job(t, t.TempDir(), t0, true)
		a := w.registrar.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0.Add(-2 * time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://a.example/r.crl"),
			Entries: []pki.Revoked{{Serial: big.NewInt(11), Time: t0.Add(-3 * time.Hour), Reason: ReasonKeyCompromise}}})
		b := w.registrar.CRL(pki.CRLTemplate{Number: 6, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://b.example/r.crl")})
		j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "a.crl", a)}, Source{File: testpki.WriteFile(t, t.TempDir(), "b.crl", b)})
		run(t, j)
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateRevoked {
			t.Fatalf("img-1: %s", img.Properties[PropGlobalValidity])
		}
	})
	t.Run("fail an old CA-only CRL replayed beside a stale complete one", func(t *testing.T) {
		// the root's newest word is stale: an older CRL of another scope,
		// long-lived, does not make it fresh
		w := newWorld(t)
		w.serve(crlT(w.registrar, 1), 0, 0)
		old := w.root.CRL(pki.CRLTemplate{Number: 3, ThisUpdate: t0.Add(-90 * 24 * time.Hour), NextUpdate: t0.Add(300 * 24 * time.Hour), IDP: pki.IDPOnlyCACerts})
		stale := w.root.CRL(pki.CRLTemplate{Number: 10, ThisUpdate: t0.Add(-10 * 24 * time.Hour), NextUpdate: t0.Add(-3 * 24 * time.Hour)})
		j := w.job(t, t.TempDir(), t0, true)
		j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "old.crl", old)},
			Source{File: testpki.WriteFile(t, t.TempDir(), "stale.crl", stale)})
		run(t, j)
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateUnknown {
			t.Fatalf("img-1: %s", img.Properties[PropGlobalValidity])
		}
	})
	t.Run("ok user-only CRL abandoned for a complete one", func(t *testing.T) {
		w := newWorld(t)
		cache := t.TempDir()
		// the user-only CRL holds img-1's certificate; the complete CRL
		// that replaces it does not
		w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPOnlyUserCerts,
			Entries: []pki.Revoked{{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold}}}), 0, 0)
		run(t, w.job(t, cache, t0, true))
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateHold {
			t.Fatalf("img-1 after the user-only CRL: %s", img.Properties[PropGlobalValidity])
		}
		w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: later.Add(-time.Hour), NextUpdate: later.Add(7 * 24 * time.Hour)}), 0, 0)
		rep := run(t, w.job(t, cache, later, true))
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateValid || img.Status != StatusActive {
			t.Fatalf("img-1 %s %s: %+v", img.Properties[PropGlobalValidity], img.Status, rep.CRLs)
		}
		if len(rep.CRLs) != 2 || !rep.CRLs[0].Superseded && !rep.CRLs[1].Superseded || len(rep.Warnings) != 0 {
			t.Fatalf("the abandoned CRL: %+v, warnings %q", rep.CRLs, rep.Warnings)
		}
	})
	t.Run("fail require CRL with a CA-only CRL for image certificates", func(t *testing.T) {
		w := newWorld(t)
		w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPOnlyCACerts}), 0, 0)
		j := w.job(t, t.TempDir(), t0, true)
		j.cfg.Policy.RequireCRL = true
		j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "root.crl", crlT(w.root, 1))},
			Source{File: testpki.WriteFile(t, t.TempDir(), "people.crl", crlT(w.people, 1))})
		run(t, j)
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateUnknown {
			t.Fatalf("img-1: %s", img.Properties[PropGlobalValidity])
		}
	})
}

// TestLoadCAsHostileDir: one bad file of an IGTF directory (a symlink
// loop, a dangling symlink, a FIFO, a directory, a certificate that does
// not parse) does not stop the CRL job from loading the directory's other
// CAs, nor block it; its CRL of the FIFO kind is refused, not waited on.
// Before, LoadCAs failed on the first such file (the crl daemon did not
// start) and blocked on a FIFO.
func TestLoadCAsHostileDir(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "abcd1234.0", testpki.CertPEM(w.registrar.Cert))
	testpki.WriteFile(t, dir, "0badf001.0", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	if err := os.Symlink("0badf002.0", filepath.Join(dir, "0badf002.0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("gone.pem", filepath.Join(dir, "0badf003.0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "0badf004.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"0badf005.0", "0badf005.r0"} {
		if err := syscall.Mkfifo(filepath.Join(dir, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var cas []*x509.Certificate
	var err error
	go func() {
		defer close(done)
		cas, err = LoadCAs(nil, []string{dir})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("LoadCAs blocked")
	}
	if err != nil || len(cas) != 1 || !cas[0].Equal(w.registrar.Cert) {
		t.Fatalf("LoadCAs: %d CAs, %v", len(cas), err)
	}
	if _, err := readFileLimited(filepath.Join(dir, "0badf005.r0")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO CRL: %v", err)
	}
	if _, err := LoadCAs([]string{filepath.Join(dir, "0badf001.0")}, nil); err == nil {
		t.Fatal("fail a listed CA file that does not parse: accepted")
	}
}

// TestJobDistributionPointAddressPolicy: with use_distribution_points, a
// CA certificate's CRL distribution point on a loopback address (the
// CRL server here; the same holds for private, link-local and metadata
// addresses) is not fetched: the run reports it refused, naming the
// address and how to fetch it anyway, and the server is never asked. The
// same URL as a [[crl.source]] url (the operator's) is fetched. Before,
// the distribution points named in certificates were fetched from
// wherever they pointed, unlike the sync's sources.
func TestJobDistributionPointAddressPolicy(t *testing.T) {
	w := newWorld(t)
	dp := w.srv.URL + "/dp.crl"
	dpCA := w.root.Intermediate("Job DP CA", testpki.WithCRLDP(dp))
	w.serve(crlT(dpCA, 1), 0, 0)
	j := w.job(t, t.TempDir(), t0, false)
	j.cfg.Sources = nil
	j.cfg.UseDistributionPoints = true
	j.cfg.CAs = append(j.cfg.CAs, dpCA.Cert)
	rep := run(t, j)
	if n := w.requests.Load(); n != 0 {
		t.Errorf("the distribution point on a loopback address was asked %d times", n)
	}
	if len(rep.Refused) != 1 || rep.Refused[0].Source != dp || rep.Refused[0].Reason != "fetch" ||
		!strings.Contains(rep.Refused[0].Error, "refused: address 127.0.0.1 is loopback (a CRL distribution point named in a certificate may reach only public addresses") ||
		!strings.Contains(rep.Refused[0].Error, "after 1 attempt") {
		t.Errorf("the run does not report the distribution point refused (once, not retried): %+v", rep.Refused)
	}

	// the operator's own source, same URL: fetched
	j = w.job(t, t.TempDir(), t0, false)
	j.cfg.Sources = []Source{{URL: dp}}
	j.cfg.UseDistributionPoints = true
	j.cfg.CAs = append(j.cfg.CAs, dpCA.Cert)
	rep = run(t, j)
	if n := w.requests.Load(); n < 1 {
		t.Errorf("the configured source %s was not fetched: %+v", dp, rep.Refused)
	}
	if len(rep.Refused) != 0 || len(rep.CRLs) != 1 {
		t.Errorf("the configured source: refused %+v, CRLs %+v", rep.Refused, rep.CRLs)
	}
}

// TestCheckDPAddr: what a distribution point may reach.
func TestCheckDPAddr(t *testing.T) {
	for a, ok := range map[string]bool{
		"192.0.2.1": true, "2001:db8::1": true, "8.8.8.8": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "192.168.1.1": false, "100.64.0.1": false, "fd00::1": false,
		"169.254.169.254": false, "fe80::1": false, "0.0.0.0": false, "224.0.0.1": false, "::ffff:127.0.0.1": false, "64:ff9b::a9fe:a9fe": false,
	} {
		err := checkDPAddr(netip.MustParseAddr(a))
		if (err == nil) != ok || (err != nil && !errors.Is(err, errDPAddress)) {
			t.Errorf("%s: %v, want allowed %v", a, err, ok)
		}
	}
}
