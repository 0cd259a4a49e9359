package crljob

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

// imagetrustBinary is the command under test (ostest.Binary; set
// IMAGETRUST_TEST_BINARY to use a prebuilt one, e.g. built with -race).
func imagetrustBinary(t testing.TB) string { return ostest.Binary(t) }

// site is one mirror: its own Keystone project and user (so that the
// catalogue holds only this test's images, whatever other packages do in
// the shared Glance), a demonstration PKI made by `imagetrust pki init`,
// images published and mirrored with the CLI, and a CRL server on loopback.
type site struct {
	t       *testing.T
	cloud   *ostest.Cloud
	dir     string // DEMO-like directory: pki/, images/, imagetrust.toml
	clouds  string // clouds.yaml with the entry "crl"
	cfg     string // imagetrust.toml
	project string
	img     *gophercloud.ServiceClient // Glance as the site's mirror user
	crls    *crlServer
	// images are the published image names (NAME.json in images/) by id.
	ids map[string]string
}

// newSite makes a site with the named images mirrored into Glance.
func newSite(t *testing.T, names ...string) *site {
	t.Helper()
	c := ostest.Start(t, ostest.Options{})
	s := &site{t: t, cloud: c, dir: t.TempDir(), ids: map[string]string{}}
	s.makeProject()
	s.crls = newCRLServer(t, filepath.Join(s.dir, "pki"))
	s.mustRun("pki", "init", "pki")
	if err := os.MkdirAll(filepath.Join(s.dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		s.publish(n, i)
	}
	s.writeConfig()
	if len(names) == 0 {
		// nothing to mirror: sync --once exits 1 for a source that
		// lists no bundle (an unmounted mount point looks so)
		return s
	}
	s.mustRun("sync", "--config", s.cfg, "--once")
	for _, n := range names {
		if im := s.image(n); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
			t.Fatalf("after sync, image %s is %s/%s", n, im.Status, im.Properties[crl.PropGlobalValidity])
		}
	}
	return s
}

// makeProject creates the site's own project and user (ostest.NewProject),
// with the clouds.yaml entry "crl".
func (s *site) makeProject() {
	p := s.cloud.NewProject(s.t, s.dir, "crl", "crl")
	s.project, s.clouds, s.img = p.ID, p.CloudsYAML, p.Image
}

// publish runs the publisher flow for images/NAME.json.
func (s *site) publish(name string, i int) {
	s.publishWith(name, i, "--cert", "pki/creator.pem", "--key", "pki/creator.key")
}

// publishWith is publish with the creator's sign options given.
func (s *site) publishWith(name string, i int, signOpts ...string) {
	s.publishBy(name, i, "registrar-ca", signOpts...)
}

// publishBy is publishWith with the image registered by the Registrar CA
// pki/REGISTRAR.pem (and .key).
func (s *site) publishBy(name string, i int, registrar string, signOpts ...string) {
	img := filepath.Join("images", name+".raw")
	data := bytes.Repeat([]byte(fmt.Sprintf("image %s %d ", name, i)), 4096)
	if err := os.WriteFile(filepath.Join(s.dir, img), data, 0o644); err != nil {
		s.t.Fatal(err)
	}
	js := filepath.Join("images", name+".json")
	s.mustRun("describe", img, "--vo", "demo", "--tag", name, "--title", "CRL test "+name, "-o", js)
	s.mustRun(append(append([]string{"sign"}, signOpts...), js)...)
	s.mustRun("approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", js)
	s.mustRun("register", "--ca", "pki/"+registrar+".pem", "--ca-key", "pki/"+registrar+".key", "--expires", "30d", js)
	var d struct {
		UUID string `json:"uuid"`
	}
	b, err := os.ReadFile(filepath.Join(s.dir, js))
	if err != nil || json.Unmarshal(b, &d) != nil || d.UUID == "" {
		s.t.Fatalf("reading the uuid of %s: %v", js, err)
	}
	s.ids[name] = strings.TrimPrefix(d.UUID, "urn:uuid:")
}

// writeConfig writes the site's imagetrust.toml: the demo PKI's trust, a
// private VO, the images directory as sync source, and the two CRLs served
// over HTTP as CRL sources.
func (s *site) writeConfig() {
	pk := filepath.Join(s.dir, "pki")
	b, err := os.ReadFile(filepath.Join(pk, "imagetrust.toml"))
	if err != nil {
		s.t.Fatal(err)
	}
	// Keep the [vo.demo] section of pki init (creator and approver DNs).
	_, vo, ok := strings.Cut(string(b), "[vo.demo]")
	if !ok {
		s.t.Fatalf("pki/imagetrust.toml has no [vo.demo]:\n%s", b)
	}
	cfg := fmt.Sprintf(`[trust]
ca_files = ["pki/people-ca.pem"]
registrar_ca_files = ["pki/registrar-ca.pem"]

[vo.demo]%s
visibility = "private"

[sync]
retire = "keep"
retries = 1
lock_file = "sync.lock"
[[sync.source]]
path = "images"
vos = ["demo"]

[crl]
cache_dir = "crl-cache"
timeout = "5s"
[[crl.source]]
url = "%s/registrar-ca.crl"
[[crl.source]]
url = "%s/people-ca.crl"
`, vo, s.crls.srv.URL, s.crls.srv.URL)
	s.cfg = filepath.Join(s.dir, "imagetrust.toml")
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// command returns the binary with args, run in the site's directory as the
// site's mirror user.
func (s *site) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, imagetrustBinary(s.t), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "OS_CLOUD=crl", "OS_CLIENT_CONFIG_FILE="+s.clouds)
	return cmd
}

// run runs the binary and returns its exit code, stdout and stderr.
func (s *site) run(args ...string) (int, string, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := s.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("imagetrust %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

func (s *site) mustRun(args ...string) string {
	s.t.Helper()
	code, out, errs := s.run(args...)
	if code != 0 {
		s.t.Fatalf("imagetrust %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// crlRun runs `imagetrust crl --once --report-json` (plus args) and
// decodes the report; it fails the test unless the exit code is want.
func (s *site) crlRun(want int, args ...string) *crl.Report {
	s.t.Helper()
	code, out, errs := s.run(append([]string{"crl", "--config", s.cfg, "--once", "--report-json"}, args...)...)
	if code != want {
		s.t.Fatalf("imagetrust crl: exit %d, want %d\n%s%s", code, want, out, errs)
	}
	var rep crl.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		s.t.Fatalf("report: %v\n%s\n%s", err, out, errs)
	}
	return &rep
}

// image reads the named image from Glance.
func (s *site) image(name string) *glance.Image {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	im, err := glance.Get(ctx, s.img, s.ids[name]).Extract()
	if err != nil {
		s.t.Fatalf("glance: image %s: %v", name, err)
	}
	return im
}

// exists reports whether the named image is in Glance.
func (s *site) exists(name string) bool {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := glance.Get(ctx, s.img, s.ids[name]).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return false
	}
	if err != nil {
		s.t.Fatalf("glance: image %s: %v", name, err)
	}
	return true
}

// snapshot is every image's status, updated_at and properties.
type snapshot map[string]glance.Image

func (s *site) snapshot() snapshot {
	out := snapshot{}
	for n := range s.ids {
		out[n] = *s.image(n)
	}
	return out
}

// unchanged fails the test if an image in names differs from before.
func (s *site) unchanged(before snapshot, names ...string) {
	s.t.Helper()
	for _, n := range names {
		b, a := before[n], *s.image(n)
		if !a.UpdatedAt.Equal(b.UpdatedAt) || a.Status != b.Status || !equalProps(a.Properties, b.Properties) {
			s.t.Errorf("image %s changed: status %s -> %s, updated_at %s -> %s, validity %q -> %q", n, b.Status, a.Status,
				b.UpdatedAt, a.UpdatedAt, b.Properties[crl.PropGlobalValidity], a.Properties[crl.PropGlobalValidity])
		}
	}
}

func equalProps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// revoke runs `imagetrust revoke` against the CA's CRL in pki/ (served live).
func (s *site) revoke(ca string, args ...string) string {
	s.t.Helper()
	return s.mustRun(append([]string{"revoke", "--ca", "pki/" + ca + ".pem", "--ca-key", "pki/" + ca + ".key", "--crl", "pki/" + ca + ".crl"}, args...)...)
}

// emptyCRL re-issues the CA's CRL in pki/ with the next number and no
// entries: a CA that drops a revocation (which `imagetrust revoke` refuses
// to do), as a site may still be served.
func (s *site) emptyCRL(ca string) {
	s.t.Helper()
	p := func(ext string) string { return filepath.Join(s.dir, "pki", ca+ext) }
	cas, err := validator.ReadCertificates(p(".pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	key, err := pki.ReadPrivateKey(p(".key"), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	old, err := os.ReadFile(p(".crl"))
	if err != nil {
		s.t.Fatal(err)
	}
	rl, err := crl.Parse(old)
	if err != nil {
		s.t.Fatal(err)
	}
	der, err := pki.IssueCRL(pki.CRLTemplate{NumberBig: new(big.Int).Add(rl.Number, big.NewInt(1)), NextUpdate: time.Now().AddDate(0, 0, 7)}, cas[0], key)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p(".crl"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// crlServer serves pki/NAME.crl as it is on disk, or, for a path with an
// override, fixed bytes or an HTTP status.
type crlServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	// override maps a path to bytes to serve instead of the file.
	override map[string][]byte
	status   map[string]int
}

func newCRLServer(t *testing.T, dir string) *crlServer {
	c := &crlServer{override: map[string][]byte{}, status: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		b, over := c.override[r.URL.Path]
		st := c.status[r.URL.Path]
		c.mu.Unlock()
		if st != 0 {
			http.Error(w, http.StatusText(st), st)
			return
		}
		if !over {
			var err error
			if b, err = os.ReadFile(filepath.Join(dir, filepath.Base(r.URL.Path))); err != nil {
				http.NotFound(w, r)
				return
			}
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(b)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// serve makes path answer b (nil: the file again).
func (c *crlServer) serve(path string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b == nil {
		delete(c.override, path)
	} else {
		c.override[path] = b
	}
}

// fail makes path answer status (0: serve again).
func (c *crlServer) fail(path string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[path] = status
}

// glanceWrites counts the write requests (POST, PUT, PATCH, DELETE) Glance
// logged for the site's project: an independent count of what the job did.
//
// glance-api writes a request's access line after it has sent the answer,
// so a count taken right after a call may miss its line (glance-api
// descheduled between the two, on a loaded machine). The count is taken
// once glance-api has logged a request sent after every counted one was
// answered (a GET of an image id no one has): glance-api, one eventlet
// process (tests/openstack: workers = 0), writes an answered request's
// line before it reads another.
func (s *site) glanceWrites() int {
	s.t.Helper()
	marker := "/v2/images/" + uuid.NewString()
	resp, err := http.Get(s.cloud.GlanceURL + marker)
	if err != nil {
		s.t.Fatalf("glance: %v", err)
	}
	resp.Body.Close()
	for !strings.Contains(s.glanceLog(), `"GET `+marker+` HTTP/1.1"`) {
		time.Sleep(20 * time.Millisecond)
	}
	return s.countGlanceWrites()
}

func (s *site) glanceLog() string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.cloud.StateDir, "log", "glance-api.log"))
	if err != nil {
		s.t.Fatalf("glance log: %v", err)
	}
	return string(b)
}

// countGlanceWrites counts the write requests of the site's project in
// glance-api's log as it is now.
func (s *site) countGlanceWrites() int {
	s.t.Helper()
	n := 0
	for _, line := range strings.Split(s.glanceLog(), "\n") {
		if !strings.Contains(line, " "+s.project+" ") {
			continue
		}
		for _, m := range []string{`"POST /`, `"PUT /`, `"PATCH /`, `"DELETE /`} {
			if strings.Contains(line, m) {
				n++
			}
		}
	}
	return n
}
