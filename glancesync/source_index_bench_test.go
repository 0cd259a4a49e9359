package glancesync

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/benchutil"
)

// BenchmarkIndexList: one op is IndexSource.List of an index of n
// bundles (descriptors of 2 KiB, signatures of 4 KiB) served by a local
// server that answers each request after 1 ms, as a site's index across a
// network would. Baseline, measured in the same run: referenceList, the
// listing as it was before (every document fetched whole, one after the
// other), best of 3.
//
//	x-sequential     List on a fresh source / baseline
//	baseline-ms      the baseline
//	requests/op      requests a List makes
//	conns/op         connections a List opens (on a fresh Fetcher: the
//	                 connections kept for the next requests)
//
//	go test -run '^$' -bench IndexList ./glancesync
func BenchmarkIndexList(b *testing.B) {
	for _, n := range []int{300} {
		b.Run(fmt.Sprintf("bundles=%d", n), func(b *testing.B) {
			s := newDocServer(b)
			var entries []IndexBundle
			for i := range n {
				d := fmt.Sprintf("d/%03d.json", i)
				entries = append(entries, IndexBundle{Descriptor: d})
				s.set("/"+d, docBody("descriptor", i, 2<<10))
				s.set("/"+d+".p7s", docBody("signature", i, 4<<10))
			}
			s.setIndex(b, entries)
			s.hold = func(*http.Request) { time.Sleep(time.Millisecond) }
			fetcher := func() *Fetcher {
				f, err := NewFetcher(HTTPOptions{RequestTimeout: 10 * time.Second, Retries: 1})
				if err != nil {
					b.Fatal(err)
				}
				return f
			}
			check := func(bs []*Bundle, skipped map[string]error, err error) {
				if err != nil || len(bs) != n || len(skipped) != 0 {
					b.Fatalf("listed %d bundles, %d skipped: %v", len(bs), len(skipped), err)
				}
			}
			base := benchutil.BestOf(3, func() {
				check(referenceList(context.Background(), &IndexSource{URL: s.index(), Fetcher: fetcher()}))
			})
			s.requests.Store(0)
			s.conns.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				b.StopTimer()
				src := &IndexSource{URL: s.index(), Fetcher: fetcher()}
				b.StartTimer()
				check(src.List(context.Background()))
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			b.ReportMetric(float64(per)/float64(base), "x-sequential")
			b.ReportMetric(float64(base.Microseconds())/1e3, "baseline-ms")
			b.ReportMetric(float64(s.requests.Load())/float64(b.N), "requests/op")
			b.ReportMetric(float64(s.conns.Load())/float64(b.N), "conns/op")
		})
	}
}
