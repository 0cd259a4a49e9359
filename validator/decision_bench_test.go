package validator

import (
	"crypto/x509"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/benchutil"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// tagCandidates returns n catalogue images of one tag (VO atlas, tag
// worker), each a distinct registered bundle, created a minute apart.
func tagCandidates(w *world, n int) []CatalogImage {
	w.t.Helper()
	tr := w.trust()
	out := make([]CatalogImage, n)
	for i := range out {
		b := w.bundle(bundleOpts{mutateDesc: func(d map[string]any) {
			d["created"] = w.now.AddDate(0, 0, -11).Add(-time.Duration(i) * time.Minute).Format(time.RFC3339)
		}})
		r := tr.Verify(b.input(w.now))
		if !r.Valid {
			w.t.Fatalf("bundle %d: %v", i, r.Err())
		}
		props, err := RecordProperties(r, b.desc, b.sig)
		if err != nil {
			w.t.Fatal(err)
		}
		out[i] = CatalogImage{ID: b.d.UUID, Owner: "mirror", Status: "active", Properties: props}
	}
	return out
}

// BenchmarkDecideTag: one op is the boot decision for a tag of n images
// (all bootable; the newest wins), with the record cache warm (the same
// Trust across ops) and cold (a fresh Trust, as after a reload: every
// record is re-verified). Baseline, in the same run: the warm decision for
// one image by its uuid (DecideBoot).
//
//	x-uuid           warm DecideTag / warm DecideBoot of one image
//	cold-ms          DecideTag on a fresh Trust (as after a reload)
//	cache-KiB/image  heap the record cache holds per distinct record (each
//	                 decided once by uuid on another fresh Trust)
//
//	go test -run '^$' -bench DecideTag -benchtime 20x ./validator
func BenchmarkDecideTag(b *testing.B) {
	for _, n := range []int{30, 100, 300} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			w := newWorld(b)
			cands := tagCandidates(w, n)
			pol := BootPolicy{MirrorProject: "mirror"}
			// the record cache's memory: every record decided once by uuid
			full := w.trust()
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&m0)
			for _, c := range cands {
				if d := full.DecideBoot(c, pol, w.now); !d.Allowed {
					b.Fatal(d.Message)
				}
			}
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			runtime.KeepAlive(full)
			runtime.KeepAlive(cands)
			tr := w.trust()
			cold := time.Now()
			if d, _ := tr.DecideTag(cands, pol, w.now); !d.Allowed || d.ImageID != cands[0].ID {
				b.Fatalf("cold: %+v", d)
			}
			coldD := time.Since(cold)
			one := benchutil.BestOf(5, func() {
				for range 100 {
					if d := tr.DecideBoot(cands[0], pol, w.now); !d.Allowed {
						b.Fatal(d.Message)
					}
				}
			}) / 100
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if d, _ := tr.DecideTag(cands, pol, w.now); !d.Allowed {
					b.Fatal(d.Message)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			runtime.KeepAlive(tr)
			b.ReportMetric(float64(per)/float64(one), "x-uuid")
			b.ReportMetric(float64(one.Microseconds()), "uuid-us")
			b.ReportMetric(float64(coldD.Microseconds())/1e3, "cold-ms")
			b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/1024/float64(n), "cache-KiB/image")
		})
	}
}

// BenchmarkVerifyTrustSize: one op is Trust.Verify of one valid bundle
// (creator, approver, image signer) with k unrelated intermediate CAs in
// the people side of the trust store (an IGTF bundle holds a few hundred
// CAs). Baseline, in the same run: the same Verify with k = 0.
//
//	x-k0   Verify time / Verify time with an empty trust store besides the PKI
//
//	go test -run '^$' -bench VerifyTrustSize -benchtime 200x ./validator
func BenchmarkVerifyTrustSize(b *testing.B) {
	w := newWorld(b)
	bu := w.bundle(bundleOpts{})
	base := w.trust()
	k0 := benchutil.BestOf(5, func() {
		for range 50 {
			if r := base.Verify(Input{Descriptor: bu.desc, Signature: bu.sig, Now: w.now}); !r.Valid {
				b.Fatal(r.Err())
			}
		}
	}) / 50
	for _, k := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("cas=%d", k), func(b *testing.B) {
			ww := *w
			ww.t = b
			tr := ww.trustWithExtra(k)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if r := tr.Verify(Input{Descriptor: bu.desc, Signature: bu.sig, Now: w.now}); !r.Valid {
					b.Fatal(r.Err())
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			b.ReportMetric(float64(per)/float64(k0), "x-k0")
		})
	}
}

// trustWithExtra is w.trust() with k more people intermediate CAs (under a
// root of their own, also in the store) that sign nothing in the bundles.
func (w *world) trustWithExtra(k int) *Trust {
	w.t.Helper()
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	people := []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}
	if k > 0 {
		extra := testpki.NewRoot(w.t, "Extra Root")
		people = append(people, extra.Cert)
		for i := range k {
			people = append(people, extra.Intermediate(fmt.Sprintf("Extra CA %d", i)).Cert)
		}
	}
	tr, _, err := NewTrust(TrustOptions{People: people, Registrar: []*x509.Certificate{w.regRoot.Cert},
		VOs: map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{cdn}, Approvers: []DN{adn}}}})
	if err != nil {
		w.t.Fatal(err)
	}
	return tr
}
