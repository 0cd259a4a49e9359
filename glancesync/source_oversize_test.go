package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestListingCountsRefusedDocuments: a document over its size limit,
// sent without a Content-Length, is read to a byte past its limit before
// it is refused, and those bytes count against the listing's limit. An
// index of such documents used to be listed as skips, each one read and
// counted as nothing: 20 descriptors of 2 MiB under a 1 MiB listing
// limit had the sync read about 20 MiB, and an index of the most bundles
// allowed could have it read gigabytes a pass.
func TestListingCountsRefusedDocuments(t *testing.T) {
	var ix Index
	ix.Version = IndexVersion
	for i := range 20 {
		ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: fmt.Sprintf("d/%d.json", i)})
	}
	index, err := json.Marshal(ix)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 2<<20)
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/index.json" {
			_, _ = w.Write(index)
			return
		}
		// chunked: no Content-Length to refuse it by
		for off := 0; off < len(big); off += 64 << 10 {
			n, err := w.Write(big[off : off+64<<10])
			sent.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	const limit = 4 << 20
	for _, par := range []int{1, DefaultIndexParallel} {
		t.Run(fmt.Sprintf("fail oversize documents past the listing limit, %d at a time", par), func(t *testing.T) {
			sent.Store(0)
			src := &IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: newTestFetcher(t),
				Parallel: par, Limits: ListingLimits{Bytes: limit}}
			_, skipped, err := src.List(context.Background())
			if !errors.Is(err, ErrListingTooLarge) {
				t.Fatalf("err = %v (%d skipped), want ErrListingTooLarge", err, len(skipped))
			}
			// the limit, plus what the requests in flight when it was
			// crossed wrote (each at most a whole document), plus what
			// socket buffers held of the refused ones
			if max := int64(limit + (par+1)*len(big)); sent.Load() > max {
				t.Fatalf("the server wrote %d bytes, want at most %d", sent.Load(), max)
			}
		})
	}
}
