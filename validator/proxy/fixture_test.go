package proxy

import (
	"context"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/validator"
)

const mirrorProject = "5c1f0e6a9d8b4b7c8e2f3a4b5c6d7e8f"

// zeroImageSHA512 is the sha512 of the fixture's images: 1024 zero bytes,
// what the tests against the real Glance upload, so that Glance's own hash
// (os_hash_value) is the signed one, as the gate requires.
var zeroImageSHA512 = func() string {
	h := sha512.Sum512(make([]byte, 1024))
	return hex.EncodeToString(h[:])
}()

// fixture is a real trust store (test PKI generated in code) and a set of
// catalogue images whose records are genuinely signed, registered and
// re-verifiable by validator.Trust.
type fixture struct {
	t        testing.TB
	trust    *validator.Trust
	people   *testpki.CA
	reg      *testpki.CA
	creator  *testpki.Leaf
	approver *testpki.Leaf
	glance   *memGlance
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	people := testpki.NewRoot(t, "People CA")
	reg := testpki.NewRoot(t, "Registrar CA")
	long := testpki.WithValidity(time.Now().Add(-5*365*24*time.Hour), time.Now().Add(5*365*24*time.Hour))
	creator := people.Leaf(testpki.Name("Alice Creator"), long)
	approver := people.Leaf(testpki.Name("Bob Approver"), long)
	dn := func(c *x509.Certificate) validator.DN {
		d, err := validator.DNFromRaw(c.RawSubject)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	vos := map[string]*validator.VOPolicy{}
	for _, vo := range []string{"atlas", "cms"} {
		// Both people may take both roles: the CMS SignerInfos are a DER
		// SET OF, sorted by bytes, so their order is not the signing order.
		both := []validator.DN{dn(creator.Cert), dn(approver.Cert)}
		vos[vo] = &validator.VOPolicy{Name: vo, Creators: both, Approvers: both}
	}
	tr, _, err := validator.NewTrust(validator.TrustOptions{
		People: []*x509.Certificate{people.Cert}, Registrar: []*x509.Certificate{reg.Cert}, VOs: vos,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, trust: tr, people: people, reg: reg, creator: creator, approver: approver, glance: newMemGlance()}
}

// imageSpec describes one catalogue image to make.
type imageSpec struct {
	id, vo, tag string
	created     time.Time
	// notBefore/notAfter of the image certificate (zero: a year around now)
	notBefore, notAfter time.Time
	global, local       string
	status              string
	owner               string
}

// add signs, approves and registers a descriptor and stores the image with
// its catalogue record in the in-memory Glance.
func (f *fixture) add(s imageSpec) *Image {
	f.t.Helper()
	// registered (notBefore) after it was created, as register does
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-24 * time.Hour)
		if s.created.After(s.notBefore) {
			s.notBefore = s.created
		}
		s.notAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	if s.created.IsZero() {
		s.created = s.notBefore.Add(-time.Hour)
	}
	desc, _ := json.Marshal(map[string]any{
		"uuid": s.id, "vo": s.vo, "tag": s.tag, "uri": "https://images.example.org/" + s.id + ".qcow2",
		"size": 1024, "sha512": zeroImageSHA512, "disk_format": "qcow2", "container_format": "bare",
		"created": s.created.UTC().Format(time.RFC3339),
	})
	p7, err := cms.Sign(desc, f.creator.Cert, f.creator.Key, cms.SignOptions{SigningTime: s.notBefore.Add(-time.Minute)})
	if err != nil {
		f.t.Fatal(err)
	}
	if p7, err = cms.AddSigner(p7, desc, f.approver.Cert, f.approver.Key, cms.SignOptions{SigningTime: s.notBefore.Add(-time.Minute)}); err != nil {
		f.t.Fatal(err)
	}
	img := f.reg.Leaf(testpki.Name("image "+s.id), testpki.WithURIs("urn:uuid:"+s.id), testpki.WithValidity(s.notBefore, s.notAfter))
	if p7, err = cms.AddSigner(p7, desc, img.Cert, img.Key, cms.SignOptions{SigningTime: s.notBefore}); err != nil {
		f.t.Fatal(err)
	}
	res := f.trust.Verify(validator.Input{Descriptor: desc, Signature: p7, Now: s.notBefore.Add(time.Minute)})
	if fl := res.Failed(); len(fl) > 0 {
		f.t.Fatalf("fixture record does not verify: %+v", fl)
	}
	props, err := validator.RecordProperties(res, desc, p7)
	if err != nil {
		f.t.Fatal(err)
	}
	if s.global == "" {
		s.global = "valid"
	}
	props[validator.PropGlobalValidity] = s.global
	if s.local != "" {
		props[validator.PropLocalValidity] = s.local
	}
	if s.status == "" {
		s.status = "active"
	}
	if s.owner == "" {
		s.owner = mirrorProject
	}
	im := &Image{ID: s.id, Name: s.vo + "-" + s.tag, Owner: s.owner, Status: s.status, Visibility: "public", Properties: props}
	f.glance.put(im)
	return im
}

// alias stores a tag alias entry (data-less, queued) for VO/TAG.
func (f *fixture) alias(id, vo, tag string) {
	f.glance.put(&Image{ID: id, Name: vo + "/" + tag, Owner: mirrorProject, Status: "queued",
		Properties: map[string]string{validator.PropAlias: vo + "/" + tag}})
}

// memGlance is an in-memory image catalogue behind the Lookup interface:
// the proxy's tests exercise the gate, not Glance (the command layer's
// Glance Lookup is tested against the real Glance). It counts calls.
type memGlance struct {
	mu     sync.Mutex
	images map[string]*Image
	calls  int
	fail   error
}

func newMemGlance() *memGlance { return &memGlance{images: map[string]*Image{}} }

func (g *memGlance) put(img *Image) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.images[img.ID] = img
}

func (g *memGlance) GetImage(_ context.Context, id string) (*Image, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.fail != nil {
		return nil, g.fail
	}
	img, ok := g.images[id]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	return img, nil
}

func (g *memGlance) ListTag(_ context.Context, vo, tag string) ([]*Image, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.fail != nil {
		return nil, g.fail
	}
	var out []*Image
	for _, img := range g.images {
		if img.Owner == mirrorProject && img.Properties[validator.PropTag] == tag && (vo == "" || img.Properties[validator.PropVO] == vo) {
			out = append(out, img)
		}
	}
	return out, nil
}

func TestFixtureDecides(t *testing.T) {
	f := newFixture(t)
	ok := f.add(imageSpec{id: "11111111-1111-4111-8111-111111111111", vo: "atlas", tag: "el9"})
	d := f.trust.DecideBoot(toCatalog(ok), validator.BootPolicy{MirrorProject: mirrorProject}, time.Now())
	if !d.Allowed {
		t.Fatalf("fixture image refused: %+v", d)
	}
}
