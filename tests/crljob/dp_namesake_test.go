package crljob

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/glance"
)

// appendCert returns the CMS ContentInfo p7 with der appended to its
// SignedData's certificates: what anyone who can write a record's
// imagetrust_signature can do, since no signature covers that bag.
func appendCert(t *testing.T, p7, der []byte) []byte {
	t.Helper()
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue // [0] EXPLICIT SignedData
	}
	if _, err := asn1.Unmarshal(p7, &ci); err != nil {
		t.Fatal(err)
	}
	var sd asn1.RawValue
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	var out []byte
	found := false
	for rest := sd.Bytes; len(rest) > 0; {
		var el asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &el); err != nil {
			t.Fatal(err)
		}
		if el.Class == asn1.ClassContextSpecific && el.Tag == 0 {
			found = true
			b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(append([]byte{}, el.Bytes...), der...)})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
			continue
		}
		out = append(out, el.FullBytes...)
	}
	if !found {
		t.Fatalf("no certificates in the signature (%x...)", sd.FullBytes[:min(64, len(sd.FullBytes))])
	}
	nsd, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: out})
	if err != nil {
		t.Fatal(err)
	}
	ci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: nsd}
	b, err := asn1.Marshal(ci)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInjectedNamesakeReal: the people CA partitions its CRLs by
// distribution point; image "b" is signed by a creator naming b.crl, whose
// CRLs are withheld (the last one stale), while a.crl's stay fresh. A
// mirror credential appends to image b's imagetrust_signature in Glance a
// certificate of its own making with the creator's issuer name and
// serial, no authorityKeyIdentifier, naming a.crl. Every signer of the
// signature still verifies with the certificates it did (the gate, which
// re-verifies the record, sees nothing amiss), but the CRL job used to
// fall back, for the two namesakes that disagree, on every CRL of the
// kind: a.crl's fresh CRL then spoke for the creator and image b stayed
// valid. Now it becomes unknown (crl.stale = "refuse").
func TestInjectedNamesakeReal(t *testing.T) {
	s := newSite(t)
	pc := newPartitionedCA(t, s)
	peopleCA, creator, dpA := pc.ca, pc.creator, pc.dpA
	creatorB := pc.creatorAt("creator-b", pc.dpB)
	s.publishWith("b", 0, "--cert", "pki/creator-b.pem", "--key", "pki/creator-b.key")
	s.mustRun("sync", "--config", s.cfg, "--once")
	if im := s.image("b"); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Fatalf("after sync, image b is %s/%s", im.Status, im.Properties[crl.PropGlobalValidity])
	}

	// the forged namesake: the people CA's name, the creator's serial, a
	// key of the forger's, a.crl
	fk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent := &x509.Certificate{Subject: peopleCA.Subject, SerialNumber: peopleCA.SerialNumber}
	fake, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: creatorB.SerialNumber, Subject: creator.Subject,
		NotBefore: creator.NotBefore, NotAfter: creator.NotAfter, CRLDistributionPoints: []string{dpA}}, parent, &fk.PublicKey, fk)
	if err != nil {
		t.Fatal(err)
	}
	im := s.image("b")
	orig, err := base64.StdEncoding.DecodeString(im.Properties[crl.PropSignature])
	if err != nil {
		t.Fatal(err)
	}
	forged := appendCert(t, orig, fake)
	before, err1 := cms.Parse(orig)
	after, err2 := cms.Parse(forged)
	if err1 != nil || err2 != nil || len(after.Signers) != len(before.Signers) || len(after.Certificates) != len(before.Certificates)+1 {
		t.Fatalf("forged signature: %v %v", err1, err2)
	}
	for i, sg := range after.Signers {
		if !sg.Certificate.Equal(before.Signers[i].Certificate) {
			t.Fatalf("signer %d found as another certificate in the forged bag", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := glance.PatchProperties(ctx, s.img, s.ids["b"], im.Properties, map[string]string{crl.PropSignature: base64.StdEncoding.EncodeToString(forged)}, nil); r.Err != nil {
		t.Fatalf("patch: %v", r.Err)
	}

	pc.serveWithheldB(time.Now())
	rep := s.crlRun(4)
	if ch := change(rep, s.ids["b"]); ch == nil || ch.To != crl.StateUnknown {
		t.Fatalf("b's point withheld, a namesake naming a's in its bag: want image b unknown: %+v (now %s)", rep, s.image("b").Properties[crl.PropGlobalValidity])
	}
}
