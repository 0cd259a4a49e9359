package proxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// bodyFor is a deterministic pseudo-random body of n bytes for a path.
func bodyFor(path string, n int) []byte {
	var seed uint64
	for _, c := range path {
		seed = seed*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestPassThroughPooledBuffers streams bodies of several copy buffers
// through the gate from concurrent clients: the pooled buffers never mix
// one response's bytes into another's.
func TestPassThroughPooledBuffers(t *testing.T) {
	f := catalogue(t)
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 200<<10 + len(r.URL.Path)*977
		if strings.HasSuffix(r.URL.Path, "/unsized") {
			w.Header().Set("Content-Type", "application/octet-stream")
			b := bodyFor(r.URL.Path, n)
			for len(b) > 0 { // written in odd pieces, no Content-Length
				k := min(len(b), 7001)
				_, _ = w.Write(b[:k])
				w.(http.Flusher).Flush()
				b = b[k:]
			}
			return
		}
		_, _ = w.Write(bodyFor(r.URL.Path, n))
	}))
	defer nova.Close()
	g := newGate(t, f, nova.URL, nil)
	var wg sync.WaitGroup
	for c := range 12 {
		wg.Go(func() {
			for i := range 6 {
				path := fmt.Sprintf("/v2.1/os-things/%d/%d", c, i)
				if i%2 == 1 {
					path += "/unsized"
				}
				resp, err := http.Get(g.srv.URL + path)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := bodyFor(path, 200<<10+len(path)*977); err != nil || !bytes.Equal(b, want) {
					t.Errorf("%s: %d bytes (want %d), %v", path, len(b), len(want), err)
				}
			}
		})
	}
	wg.Wait()
}

// TestVersionPathLargeBody: a response to GET /v2.1 too large to be a
// version document passes whole and unmodified.
func TestVersionPathLargeBody(t *testing.T) {
	f := catalogue(t)
	big := bytes.Repeat([]byte(`{"href":"http://upstream/x"},`), (maxVersionDoc/29)+1000)
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(big)
	}))
	defer nova.Close()
	g := newGate(t, f, nova.URL, nil)
	resp, err := http.Get(g.srv.URL + "/v2.1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("%d bytes of %d, %v", len(b), len(big), err)
	}
}
