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
// bundles (descriptors of 2 KiB, signatures of 4 KiB, each with an ETag)
// served by a local server that answers each request after 1 ms, as a
// site's index across a network would. Baseline, measured in the same run:
// referenceList, the listing as it was before (every document fetched
// whole, one after the other), best of 3.
//
//	fresh       List on a fresh source: every document fetched whole,
//	            Parallel at a time
//	remembered  List on a source that listed the same index before:
//	            conditional requests, every answer a 304
//
//	x-sequential     List / baseline
//	baseline-ms      the baseline
//	requests/op      requests a List makes
//	body-KiB/op      bytes of bodies the server sent per List
//	conns/op         connections a List opens (fresh: on a fresh Fetcher)
//
//	go test -run '^$' -bench IndexList ./glancesync
func BenchmarkIndexList(b *testing.B) {
	const n = 300
	for _, remembered := range []bool{false, true} {
		name := "fresh"
		if remembered {
			name = "remembered"
		}
		b.Run(fmt.Sprintf("bundles=%d/%s", n, name), func(b *testing.B) {
			s := newDocServer(b)
			s.validators = "etag"
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
			warm := &IndexSource{URL: s.index(), Fetcher: fetcher()}
			check(warm.List(context.Background()))
			s.reset()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				src := warm
				if !remembered {
					b.StopTimer()
					src = &IndexSource{URL: s.index(), Fetcher: fetcher()}
					b.StartTimer()
				}
				check(src.List(context.Background()))
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			b.ReportMetric(float64(per)/float64(base), "x-sequential")
			b.ReportMetric(float64(base.Microseconds())/1e3, "baseline-ms")
			b.ReportMetric(float64(s.requests.Load())/float64(b.N), "requests/op")
			b.ReportMetric(float64(s.bodyBytes.Load())/1024/float64(b.N), "body-KiB/op")
			b.ReportMetric(float64(s.conns.Load())/float64(b.N), "conns/op")
		})
	}
}
