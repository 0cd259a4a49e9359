package glancesync

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	osconfig "github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/validator"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envFUSEServe); spec != "" {
		os.Exit(serveHangingFUSE(spec))
	}
	os.Exit(ostest.Main(m))
}

// world is a test PKI and the trust built from it.
type world struct {
	t          testing.TB
	now        time.Time
	peopleRoot *testpki.CA
	regRoot    *testpki.CA
	otherRoot  *testpki.CA
	creator    *testpki.Leaf
	approver   *testpki.Leaf
	stranger   *testpki.Leaf
}

func newWorld(t testing.TB) *world {
	now := time.Now()
	w := &world{t: t, now: now}
	w.peopleRoot = testpki.NewRoot(t, "People Root")
	w.regRoot = testpki.NewRoot(t, "Registrar Root")
	w.otherRoot = testpki.NewRoot(t, "Unknown Root")
	valid := testpki.WithValidity(now.AddDate(0, -6, 0), now.AddDate(1, 0, 0))
	w.creator = w.peopleRoot.Leaf(testpki.Name("Alice Creator"), valid)
	w.approver = w.peopleRoot.Leaf(testpki.Name("Bob Approver"), valid)
	w.stranger = w.otherRoot.Leaf(testpki.Name("Mallory"), valid)
	return w
}

var testVOs = []string{"atlas", "cms", "lhcb"}

func (w *world) trust() *validator.Trust { return w.trustWith(nil) }

// trustWith is trust with CRLs (DER) of the world's CAs.
func (w *world) trustWith(crls [][]byte) *validator.Trust {
	cdn, _ := validator.DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := validator.DNFromRaw(w.approver.Cert.RawSubject)
	vos := map[string]*validator.VOPolicy{}
	for _, v := range testVOs {
		vos[v] = &validator.VOPolicy{Name: v, Creators: []validator.DN{cdn}, Approvers: []validator.DN{adn}}
	}
	tr, _, err := validator.NewTrust(validator.TrustOptions{
		People: []*x509.Certificate{w.peopleRoot.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert}, VOs: vos, CRLs: crls,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return tr
}

// spec describes one bundle to publish, and how to spoil it.
type spec struct {
	vo, tag     string
	created     time.Time
	createdNano bool // created written with its fraction of a second
	size        int
	image       []byte // when set, the image bytes (size ignored)
	noApprover  bool
	untrusted   bool // signed by a creator of an unknown CA
	expired     bool
	wrongSHA    bool // descriptor names another sha512
	tamperDesc  bool // descriptor changed after signing
	tamperImage bool // one image byte flipped after signing
	truncate    bool // image one byte short
	pad         bool // image one byte long
	id          string
	seed        string // uuid_seed, written when set (id is the caller's)
	uri         string // default: NAME.img beside the descriptor
	name        string
	// external names an image that exists elsewhere (with uri): its size
	// and sha512, so that the bytes are never loaded here.
	external *imageRef
	// props are the descriptor's free-form properties (nil:
	// hw_rng_model=virtio)
	props map[string]string
}

// imageRef is the size and sha512 (hex) of an image file.
type imageRef struct {
	size   int64
	sha512 string
}

type published struct {
	id, dir, name string
	vo, tag       string
	desc, sig     []byte
	image         []byte
	// imageCert is the image certificate (issued by the Registrar root).
	imageCert *x509.Certificate
}

// publish writes NAME.json, NAME.json.p7s and NAME.img into dir.
func (w *world) publish(dir string, s spec) *published {
	t := w.t
	t.Helper()
	if s.vo == "" {
		s.vo = "atlas"
	}
	if s.tag == "" {
		s.tag = "worker"
	}
	if s.created.IsZero() {
		s.created = w.now.Add(-time.Hour)
	}
	if s.id == "" {
		s.id = uuid.NewString()
	}
	if s.name == "" {
		s.name = s.id
	}
	img := s.image
	if img == nil && s.external == nil {
		if s.size == 0 {
			s.size = 64 << 10
		}
		img = make([]byte, s.size)
		_, _ = rand.Read(img)
	}
	sum := sha512.Sum512(img)
	if s.wrongSHA {
		sum[0] ^= 1
	}
	sumHex, size := hex.EncodeToString(sum[:]), int64(len(img))
	if s.external != nil {
		sumHex, size = s.external.sha512, s.external.size
	}
	uri := s.uri
	if uri == "" {
		uri = s.name + ".img"
	}
	created := s.created.UTC().Format(time.RFC3339)
	if s.createdNano {
		created = s.created.UTC().Format(time.RFC3339Nano)
	}
	props := s.props
	if props == nil {
		props = map[string]string{"hw_rng_model": "virtio"}
	}
	d := map[string]any{
		"uuid": s.id, "vo": s.vo, "tag": s.tag, "uri": uri, "size": size, "sha512": sumHex,
		"disk_format": "raw", "container_format": "bare", "created": created,
		"title": "Test " + s.vo + " " + s.tag, "os_distro": "alma", "os_version": "9", "architecture": "x86_64",
		"min_disk": 1, "min_ram": 512, "properties": props,
	}
	if s.seed != "" {
		d["uuid_seed"] = s.seed
	}
	desc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	regAt := w.now.Add(-30 * time.Minute)
	creator := w.creator
	if s.untrusted {
		creator = w.stranger
	}
	sig, err := cms.Sign(desc, creator.Cert, creator.Key, cms.SignOptions{Chain: creator.Chain, SigningTime: regAt.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.noApprover {
		if sig, err = cms.AddSigner(sig, desc, w.approver.Cert, w.approver.Key, cms.SignOptions{SigningTime: regAt.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	nb, na := regAt, w.now.AddDate(0, 3, 0)
	if s.expired {
		nb, na = w.now.AddDate(0, -2, 0), w.now.AddDate(0, 0, -1)
	}
	leaf := w.regRoot.Leaf(pkix.Name{CommonName: "image " + s.id}, testpki.WithURIs("urn:uuid:"+s.id), testpki.WithValidity(nb, na))
	if sig, err = cms.AddSigner(sig, desc, leaf.Cert, leaf.Key, cms.SignOptions{SigningTime: nb}); err != nil {
		t.Fatal(err)
	}
	if s.tamperDesc {
		desc = []byte(strings.Replace(string(desc), `"tag":"`+s.tag+`"`, `"tag":"`+s.tag+`x"`, 1))
	}
	file := append([]byte(nil), img...)
	switch {
	case s.tamperImage:
		file[len(file)/2] ^= 0xff
	case s.truncate:
		file = file[:len(file)-1]
	case s.pad:
		file = append(file, 0)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(n string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(s.name+".json", desc)
	write(s.name+".json.p7s", sig)
	if s.uri == "" {
		write(s.name+".img", file)
	}
	return &published{id: s.id, dir: dir, name: s.name, vo: s.vo, tag: s.tag, desc: desc, sig: sig, image: img, imageCert: leaf.Cert}
}

// writeCounter counts the requests that are not GET or HEAD: writes Glance
// accepted (2xx) and refused ones apart.
type writeCounter struct {
	rt       http.RoundTripper
	writes   atomic.Int64
	rejected atomic.Int64
	mu       sync.Mutex
	log      string
}

func (c *writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.URL.Path != "/v3/auth/tokens" {
		code := 0
		if err == nil {
			code = resp.StatusCode
		}
		if code >= 200 && code < 300 {
			c.writes.Add(1)
		} else {
			c.rejected.Add(1)
		}
		c.mu.Lock()
		c.log += fmt.Sprintf("%s %s -> %d\n", r.Method, r.URL.Path, code)
		c.mu.Unlock()
	}
	return resp, err
}

func (c *writeCounter) reset() (writes int64) {
	c.mu.Lock()
	c.log = ""
	c.mu.Unlock()
	return c.writes.Load()
}

// env is a running stack and clients on it.
type env struct {
	cloud   *ostest.Cloud
	project string // mirror project id
	// cloudsYAML holds the entry ostest.CloudMirror for the mirror user
	// of project (OS_CLOUD=mirror for the imagetrust binary; provider)
	cloudsYAML string
	glance     Glance
	sc         *gophercloud.ServiceClient
	counter    *writeCounter
	admin      Glance
	demo       *gophercloud.ServiceClient
}

func projectID(t testing.TB, pc *gophercloud.ProviderClient) string {
	t.Helper()
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("auth result is %T, not a Keystone v3 token", pc.GetAuthResult())
	}
	p, err := cr.ExtractProject()
	if err != nil || p == nil {
		t.Fatalf("token has no project: %v", err)
	}
	return p.ID
}

// newEnv is an env on the shared stack, syncing into this test process's
// own mirror project (ownMirror), not the stack's: a pass retires and
// un-aliases every image of the mirror project of a VO it lists completely
// (or has no source for), so another process syncing the same project (a
// second `go test ./glancesync` on the stack) would hide this one's images
// and delete its aliases mid-test, and this one's passes would write to
// theirs, and to other packages' images in the stack's mirror project.
func newEnv(t testing.TB) *env {
	c := ostest.Start(t, ostest.Options{})
	return newEnvAs(t, c, ownMirror(t, c))
}

// ownMirror returns the clouds.yaml (entry ostest.CloudMirror) of this
// process's mirror project on c (ostest.Cloud.ProcessProject).
func ownMirror(t testing.TB, c *ostest.Cloud) string {
	t.Helper()
	return c.ProcessProject(t, "gsync").CloudsYAML
}

// newEnvOn is newEnv on the stack c (one of the test's own: StartPrivate),
// as the stack's own mirror user and project.
func newEnvOn(t testing.TB, c *ostest.Cloud) *env { return newEnvAs(t, c, c.CloudsYAML) }

// newEnvAs is an env on c whose mirror is the user of entry
// ostest.CloudMirror in cloudsYAML.
func newEnvAs(t testing.TB, c *ostest.Cloud, cloudsYAML string) *env {
	e := &env{cloud: c, cloudsYAML: cloudsYAML}
	pc := e.provider(t)
	e.counter = &writeCounter{rt: http.DefaultTransport}
	pc.HTTPClient = http.Client{Transport: e.counter}
	_, eo := e.authOptions(t)
	sc, err := openstack.NewImageV2(pc, eo)
	if err != nil {
		t.Fatal(err)
	}
	e.sc = sc
	e.glance = NewGlance(sc)
	e.project = projectID(t, pc)
	e.admin = NewGlance(c.ImageClient(t, ostest.CloudAdmin))
	e.demo = c.ImageClient(t, ostest.CloudDemo)
	return e
}

// authOptions are the mirror user's, as gophercloud reads them from
// e.cloudsYAML, with AllowReauth set.
func (e *env) authOptions(t testing.TB) (gophercloud.AuthOptions, gophercloud.EndpointOpts) {
	t.Helper()
	f, err := os.Open(e.cloudsYAML)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ao, eo, _, err := clouds.Parse(clouds.WithCloudsYAML(f), clouds.WithCloudName(ostest.CloudMirror))
	if err != nil {
		t.Fatalf("cloud %q in %s: %v", ostest.CloudMirror, e.cloudsYAML, err)
	}
	ao.AllowReauth = true
	return ao, eo
}

// provider is a provider client of the mirror user, authenticated anew;
// tests may replace its HTTPClient.
func (e *env) provider(t testing.TB) *gophercloud.ProviderClient {
	t.Helper()
	ao, _ := e.authOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := osconfig.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatalf("authenticating as the mirror user of %s: %v", e.cloudsYAML, err)
	}
	return pc
}

// mirrorEnv is the environment of the imagetrust binary run as the mirror.
func (e *env) mirrorEnv() []string {
	return append(os.Environ(), "OS_CLOUD="+ostest.CloudMirror, "OS_CLIENT_CONFIG_FILE="+e.cloudsYAML)
}

func (e *env) options(t testing.TB, w *world, dirs map[string][]string) Options {
	vos := map[string]config.VO{}
	for _, v := range testVOs {
		vos[v] = config.VO{Visibility: "shared"}
	}
	var srcs []Source
	for dir, allowed := range dirs {
		srcs = append(srcs, &DirSource{Root: dir, AllowedVOs: allowed})
	}
	return Options{
		Sync: config.Sync{Parallel: 2, Retire: "hide", StaleAfter: config.Duration{Duration: time.Hour}},
		VOs:  vos, Trust: w.trust(), Glance: e.glance, MirrorProject: e.project, Sources: srcs,
		Logger: testLogger(t), ImportPoll: 200 * time.Millisecond, ImportTimeout: 2 * time.Minute,
	}
}

func (e *env) get(t testing.TB, id string) *Image {
	t.Helper()
	im, err := e.admin.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return im
}

func run(t testing.TB, o Options) *Report {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := s.Run(ctx)
	if err != nil {
		t.Fatalf("sync pass: %v", err)
	}
	return r
}

func removeBundle(t testing.TB, p *published) {
	t.Helper()
	for _, n := range []string{p.name + ".json", p.name + ".json.p7s"} {
		if err := os.Remove(filepath.Join(p.dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}
