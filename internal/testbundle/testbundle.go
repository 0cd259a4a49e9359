// Package testbundle writes, for tests, the bundles a publisher puts in a
// directory source: NAME.json (the descriptor), NAME.json.p7s (signed by a
// creator, an approver and the image's own certificate from a Registrar
// CA) and NAME.img, each of them good or spoiled in one chosen way.
package testbundle

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// Signers sign bundles: a creator and an approver (with the intermediates
// of their chains, embedded in the signature), and the Registrar CA that
// issues each image's certificate.
type Signers struct {
	Creator, Approver *testpki.Leaf
	Registrar         *testpki.CA
}

// Spec is one bundle to write, and how to spoil it.
type Spec struct {
	// ID is the descriptor uuid (default: a new one); Name the file name
	// stem (default: the id).
	ID, Name string
	VO, Tag  string
	// Created is the descriptor's created time (default: an hour ago).
	Created time.Time
	// Size of random image bytes (default 16 KiB).
	Size int
	// Serial of the image certificate (default: random).
	Serial int64
	// NotBefore and NotAfter of the image certificate (default: 30 minutes
	// ago, 90 days ahead). NotBefore is the registration time.
	NotBefore, NotAfter time.Time
	// Creator signs instead of the Signers' creator (an untrusted one).
	Creator *testpki.Leaf
	// NoApprover leaves the approver's signature out.
	NoApprover bool
	// WrongSHA makes the descriptor name another sha512 than the image's.
	WrongSHA bool
	// TamperDesc changes the descriptor (its tag) after signing.
	TamperDesc bool
	// TamperImage flips one byte of the image after signing; Truncate
	// drops its last byte.
	TamperImage, Truncate bool
}

// Published is a written bundle.
type Published struct {
	ID, Dir, Name string
	VO, Tag       string
	Created       time.Time
	Desc, Sig     []byte
	// Image holds the bytes the descriptor describes (before any spoiling).
	Image     []byte
	ImageCert *x509.Certificate
}

// Files are the bundle's file names (descriptor, signature, image).
func (p *Published) Files() []string {
	return []string{p.Name + ".json", p.Name + ".json.p7s", p.Name + ".img"}
}

// Remove deletes the bundle's files from its directory.
func (p *Published) Remove(tb testing.TB) {
	tb.Helper()
	for _, n := range p.Files() {
		if err := os.Remove(filepath.Join(p.Dir, n)); err != nil && !os.IsNotExist(err) {
			tb.Fatal(err)
		}
	}
}

// Publish writes the bundle s describes into dir, the signature last (as
// publishers are told to).
func (sg Signers) Publish(tb testing.TB, dir string, s Spec) *Published {
	tb.Helper()
	now := time.Now()
	if s.ID == "" {
		s.ID = uuid.NewString()
	}
	if s.Name == "" {
		s.Name = s.ID
	}
	if s.Created.IsZero() {
		s.Created = now.Add(-time.Hour)
	}
	if s.Size == 0 {
		s.Size = 16 << 10
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = now.Add(-30 * time.Minute)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = now.AddDate(0, 0, 90)
	}
	img := make([]byte, s.Size)
	_, _ = rand.Read(img)
	sum := sha512.Sum512(img)
	if s.WrongSHA {
		sum[0] ^= 1
	}
	d := map[string]any{
		"uuid": s.ID, "vo": s.VO, "tag": s.Tag, "uri": s.Name + ".img", "size": len(img), "sha512": hex.EncodeToString(sum[:]),
		"disk_format": "raw", "container_format": "bare", "created": s.Created.UTC().Format(time.RFC3339),
		"title": "Test " + s.VO + " " + s.Tag, "os_distro": "alma", "os_version": "9", "architecture": "x86_64",
		"min_disk": 1, "min_ram": 512,
	}
	desc, err := json.Marshal(d)
	if err != nil {
		tb.Fatal(err)
	}
	creator := sg.Creator
	if s.Creator != nil {
		creator = s.Creator
	}
	signAt := s.NotBefore.Add(-time.Minute)
	sig, err := cms.Sign(desc, creator.Cert, creator.Key, cms.SignOptions{Chain: creator.Chain, SigningTime: signAt})
	if err != nil {
		tb.Fatal(err)
	}
	if !s.NoApprover {
		if sig, err = cms.AddSigner(sig, desc, sg.Approver.Cert, sg.Approver.Key, cms.SignOptions{Chain: sg.Approver.Chain, SigningTime: signAt}); err != nil {
			tb.Fatal(err)
		}
	}
	opts := []testpki.Option{testpki.WithURIs("urn:uuid:" + s.ID), testpki.WithValidity(s.NotBefore, s.NotAfter)}
	if s.Serial != 0 {
		opts = append(opts, testpki.WithSerial(s.Serial))
	}
	leaf := sg.Registrar.Leaf(pkix.Name{CommonName: "image " + s.ID}, opts...)
	if sig, err = cms.AddSigner(sig, desc, leaf.Cert, leaf.Key, cms.SignOptions{Chain: leaf.Chain, SigningTime: s.NotBefore}); err != nil {
		tb.Fatal(err)
	}
	if s.TamperDesc {
		desc = []byte(strings.Replace(string(desc), `"tag":"`+s.Tag+`"`, `"tag":"`+s.Tag+`x"`, 1))
	}
	file := append([]byte(nil), img...)
	switch {
	case s.TamperImage:
		file[len(file)/2] ^= 0xff
	case s.Truncate:
		file = file[:len(file)-1]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	p := &Published{ID: s.ID, Dir: dir, Name: s.Name, VO: s.VO, Tag: s.Tag, Created: s.Created, Desc: desc, Sig: sig, Image: img, ImageCert: leaf.Cert}
	for i, b := range [][]byte{desc, file} {
		if err := os.WriteFile(filepath.Join(dir, p.Files()[2*i]), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, p.Files()[1]), sig, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}
