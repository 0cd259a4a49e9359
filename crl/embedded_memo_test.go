package crl

import (
	"crypto/x509"
	"encoding/base64"
	"reflect"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestEmbeddedCAsMemo: what a job remembers of the records' signatures
// from one run to the next changes no answer. Every call, fresh or with the
// memo of the calls before (whatever anchors and time they had), finds the
// same CAs and counts: a certificate that chained once but no longer does
// (another trust store, time passed) is not taken from the memo. The memo
// keeps the signatures of the last call's records only.
func TestEmbeddedCAsMemo(t *testing.T) {
	root := testpki.NewRoot(t, "Memo Root")
	other := testpki.NewRoot(t, "Memo Other Root")
	mid := root.Intermediate("Memo Mid CA")
	sub := mid.Intermediate("Memo Sub CA")
	leaf := sub.Leaf(testpki.Name("Signer"))
	late := root.Intermediate("Memo Late CA", testpki.WithValidity(t0.Add(24*time.Hour), t0.Add(400*24*time.Hour)))
	lateLeaf := late.Leaf(testpki.Name("Late Signer"), testpki.WithValidity(t0.Add(25*time.Hour), t0.Add(300*24*time.Hour)))
	record := func(l *testpki.Leaf, chain ...*x509.Certificate) Image {
		p7, err := cms.Sign([]byte("descriptor"), l.Cert, l.Key, cms.SignOptions{Chain: chain, SigningTime: l.Cert.NotBefore.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return Image{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString(p7)}}
	}
	a, b, c := record(leaf, sub.Cert, mid.Cert), record(leaf, sub.Cert), record(lateLeaf, late.Cert)
	bad := Image{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString([]byte("not CMS"))}}
	all := []Image{a, b, a, c, bad, bad}
	steps := []struct {
		imgs    []Image
		anchors []*x509.Certificate
		now     time.Time
		cas     int
	}{
		{all, []*x509.Certificate{root.Cert}, t0, 3},
		{all, []*x509.Certificate{other.Cert}, t0, 0},                     // trust store changed
		{all, []*x509.Certificate{root.Cert}, t0, 3},                      // and back
		{all, []*x509.Certificate{mid.Cert}, t0, 1},                       // only sub below mid
		{[]Image{b}, []*x509.Certificate{root.Cert}, t0, 0},               // mid no longer embedded
		{all, []*x509.Certificate{root.Cert}, t0.Add(-72 * time.Hour), 3}, // late: not yet valid, chained at its notBefore
	}
	var memo sigMemo
	for i, st := range steps {
		want := EmbeddedCAs(st.imgs, st.anchors, st.now)
		got := embeddedCAs(st.imgs, st.anchors, st.now, &memo)
		if len(want.CAs) != st.cas {
			t.Fatalf("step %d: fresh call found %d CAs, want %d", i, len(want.CAs), st.cas)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: with the memo %d CAs, %d unchained, %d unreadable, truncated %v; fresh %d, %d, %d, %v",
				i, len(got.CAs), got.Unchained, got.Unreadable, got.Truncated, len(want.CAs), want.Unchained, want.Unreadable, want.Truncated)
		}
		distinct := map[string]bool{}
		for _, img := range st.imgs {
			distinct[img.Properties[PropSignature]] = true
		}
		if len(memo.m) != len(distinct) {
			t.Fatalf("step %d: memo holds %d signatures, the records %d", i, len(memo.m), len(distinct))
		}
	}
}

// BenchmarkEmbeddedCAsMemo is BenchmarkEmbeddedCAs (1000 records, each its
// own signature) as the job's later runs see it: with the memo of the run
// before.
func BenchmarkEmbeddedCAsMemo(b *testing.B) {
	root, imgs := benchRecords(b, 1000)
	var memo sigMemo
	embeddedCAs(imgs, []*x509.Certificate{root.Cert}, t0, &memo)
	b.ResetTimer()
	for b.Loop() {
		if got := embeddedCAs(imgs, []*x509.Certificate{root.Cert}, t0, &memo); len(got.CAs) != 2 {
			b.Fatalf("%d CAs", len(got.CAs))
		}
	}
}
