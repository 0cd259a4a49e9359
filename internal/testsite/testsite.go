// Package testsite builds, for tests, a grid site's PKI and the signed
// part of the catalogue records `imagetrust sync` writes: who signed an
// image, with which chains. It knows nothing of the record's property
// names; the validator's and the CRL job's tests each turn a Signed into
// their own record, so each keeps its own view of the format.
package testsite

import (
	"crypto/x509"
	"testing"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// Site is a site's PKI: a people root with a people CA under it, a
// Registrar root with a Registrar CA under it, another people root (a
// second IGTF CA) with its own CA and creator, and another site's
// Registrar root.
type Site struct {
	PeopleRoot, PeopleCA, RegRoot, RegCA       *testpki.CA
	OtherPeople, OtherPeopleCA, OtherRegistrar *testpki.CA
	Creator, Approver, OtherCreator            *testpki.Leaf
}

// New builds a Site.
func New(tb testing.TB) *Site {
	tb.Helper()
	s := &Site{PeopleRoot: testpki.NewRoot(tb, "Trust People Root"), RegRoot: testpki.NewRoot(tb, "Trust Registrar Root"),
		OtherPeople: testpki.NewRoot(tb, "Trust Other People Root"), OtherRegistrar: testpki.NewRoot(tb, "Trust Other Registrar Root")}
	s.PeopleCA = s.PeopleRoot.Intermediate("Trust People CA")
	s.RegCA = s.RegRoot.Intermediate("Trust Registrar CA")
	s.OtherPeopleCA = s.OtherPeople.Intermediate("Trust Other People CA")
	s.Creator = s.PeopleCA.Leaf(testpki.Name("Trust Creator"), testpki.WithSerial(301))
	s.Approver = s.PeopleCA.Leaf(testpki.Name("Trust Approver"), testpki.WithSerial(302))
	s.OtherCreator = s.OtherPeopleCA.Leaf(testpki.Name("Trust Other Creator"), testpki.WithSerial(303))
	return s
}

// Link is one certificate of a record's chains and the role it plays:
// "image", "creator" or "approver" for a signer, the role with "-ca" for
// each intermediate below its root.
type Link struct {
	Role string
	Cert *x509.Certificate
}

// Signed is an image signed by a creator and an approver and registered
// by its own certificate.
type Signed struct {
	// Signature is the CMS SignedData of the three signers over the
	// descriptor {"uuid":"<id>"}, carrying their intermediates.
	Signature []byte
	// Image is the image certificate.
	Image *testpki.Leaf
	// Links are the chains below the roots: image, creator, approver.
	Links []Link
}

// Sign signs the image id as creator and approver, and registers it with
// a certificate of the given serial (and opts) issued by reg, a CA of
// either side.
func Sign(tb testing.TB, id string, serial int64, reg *testpki.CA, creator, approver *testpki.Leaf, opts ...testpki.Option) *Signed {
	tb.Helper()
	img := reg.Leaf(testpki.Name("image "+id), append([]testpki.Option{testpki.WithSerial(serial), testpki.WithURIs("urn:uuid:" + id)}, opts...)...)
	content := []byte(`{"uuid":"` + id + `"}`)
	p7, err := cms.Sign(content, creator.Cert, creator.Key, cms.SignOptions{Chain: creator.Chain})
	if err == nil {
		p7, err = cms.AddSigner(p7, content, approver.Cert, approver.Key, cms.SignOptions{Chain: approver.Chain})
	}
	if err == nil {
		p7, err = cms.AddSigner(p7, content, img.Cert, img.Key, cms.SignOptions{Chain: img.Chain})
	}
	if err != nil {
		tb.Fatal(err)
	}
	s := &Signed{Signature: p7, Image: img}
	for _, signer := range []struct {
		role string
		leaf *testpki.Leaf
	}{{"image", img}, {"creator", creator}, {"approver", approver}} {
		for i, c := range append([]*x509.Certificate{signer.leaf.Cert}, signer.leaf.Chain...) {
			role := signer.role
			if i > 0 {
				role += "-ca"
			}
			s.Links = append(s.Links, Link{Role: role, Cert: c})
		}
	}
	return s
}
