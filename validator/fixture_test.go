package validator

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// world is a whole test PKI: a people root with an intermediate, a Registrar
// root, a creator, an approver, and the trust built from them.
type world struct {
	t          testing.TB
	now        time.Time
	peopleRoot *testpki.CA
	peopleSub  *testpki.CA
	regRoot    *testpki.CA
	creator    *testpki.Leaf
	approver   *testpki.Leaf
	crls       [][]byte
	strict     bool
	// rootsOnly: the trust holds the people root without its
	// intermediate, which the signatures bring
	rootsOnly  bool
	requireCRL bool
}

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newWorld(t testing.TB) *world {
	w := &world{t: t, now: testNow}
	w.peopleRoot = testpki.NewRoot(t, "People Root")
	w.peopleSub = w.peopleRoot.Intermediate("People Issuing CA")
	w.regRoot = testpki.NewRoot(t, "Registrar CA")
	w.creator = w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	w.approver = w.peopleSub.Leaf(testpki.Name("Bob Approver"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	return w
}

func (w *world) trust() *Trust {
	w.t.Helper()
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	other, _ := ParseDN("/O=imagetrust test/CN=Other Approver")
	people := []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}
	if w.rootsOnly {
		people = people[:1]
	}
	tr, warns, err := NewTrust(TrustOptions{
		People:     people,
		RequireCRL: w.requireCRL,
		Registrar:  []*x509.Certificate{w.regRoot.Cert},
		CRLs:       w.crls,
		VOs: map[string]*VOPolicy{
			"atlas": {Name: "atlas", Creators: []DN{cdn}, Approvers: []DN{adn}},
			"cms":   {Name: "cms", Creators: []DN{cdn}, Approvers: []DN{other}},
		},
		Strict: w.strict,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, x := range warns {
		w.t.Logf("trust warning: %s", x)
	}
	return tr
}

// bundle is a descriptor, its image and its signature.
type bundle struct {
	desc, image, sig []byte
	d                Descriptor
	imageCert        *x509.Certificate
}

// bundleOpts change how a bundle is made.
type bundleOpts struct {
	vo          string
	creator     *testpki.Leaf
	approver    *testpki.Leaf
	noApprover  bool
	noRegister  bool
	regCA       *testpki.CA
	certUUID    string
	regAt       time.Time
	expires     time.Time
	hash        crypto.Hash
	pss         bool
	imageSize   int
	mutateDesc  func(map[string]any)
	imageSigner *testpki.Leaf // registers with this ready-made certificate
	twoUUIDs    bool          // the image certificate names a second uuid
}

func (w *world) bundle(o bundleOpts) *bundle {
	t := w.t
	t.Helper()
	if o.vo == "" {
		o.vo = "atlas"
	}
	if o.creator == nil {
		o.creator = w.creator
	}
	if o.approver == nil {
		o.approver = w.approver
	}
	if o.regCA == nil {
		o.regCA = w.regRoot
	}
	if o.regAt.IsZero() {
		o.regAt = w.now.AddDate(0, 0, -10)
	}
	if o.expires.IsZero() {
		o.expires = w.now.AddDate(0, 3, 0)
	}
	if o.hash == 0 {
		o.hash = crypto.SHA256
	}
	if o.imageSize == 0 {
		o.imageSize = 4096
	}
	img := make([]byte, o.imageSize)
	_, _ = rand.Read(img)
	sum := sha512.Sum512(img)
	d := map[string]any{
		"uuid": uuid.NewString(), "vo": o.vo, "tag": "worker", "uri": "image.qcow2",
		"size": len(img), "sha512": hex.EncodeToString(sum[:]), "disk_format": "qcow2",
		"container_format": "bare", "created": w.now.AddDate(0, 0, -11).Format(time.RFC3339),
	}
	if o.mutateDesc != nil {
		o.mutateDesc(d)
	}
	desc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{desc: desc, image: img}
	_ = json.Unmarshal(desc, &b.d)
	sig, err := cms.Sign(desc, o.creator.Cert, o.creator.Key, cms.SignOptions{Hash: o.hash, PSS: o.pss, Chain: o.creator.Chain, SigningTime: o.regAt.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noApprover {
		if sig, err = cms.AddSigner(sig, desc, o.approver.Cert, o.approver.Key, cms.SignOptions{Hash: o.hash, Chain: o.approver.Chain, SigningTime: o.regAt.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if !o.noRegister {
		leaf := o.imageSigner
		if leaf == nil {
			u := o.certUUID
			if u == "" {
				u, _ = d["uuid"].(string)
			}
			uris := []string{"urn:uuid:" + u}
			if o.twoUUIDs {
				uris = append(uris, "urn:uuid:0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f")
			}
			leaf = o.regCA.Leaf(pkix.Name{CommonName: "image " + u}, testpki.WithURIs(uris...), testpki.WithValidity(o.regAt, o.expires))
		}
		b.imageCert = leaf.Cert
		if sig, err = cms.AddSigner(sig, desc, leaf.Cert, leaf.Key, cms.SignOptions{Hash: o.hash, Chain: leaf.Chain, SigningTime: o.regAt}); err != nil {
			t.Fatal(err)
		}
	}
	b.sig = sig
	return b
}

func (b *bundle) input(now time.Time) Input {
	return Input{Descriptor: b.desc, Signature: b.sig, Image: bytes.NewReader(b.image), Now: now}
}

func revokeCRL(ca *testpki.CA, number int64, entries ...pki.Revoked) []byte {
	return ca.CRL(pki.CRLTemplate{Number: number, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), Entries: entries})
}
