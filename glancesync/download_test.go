package glancesync

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flakyServer serves body, breaking the connection after cut bytes on the
// first request. rangeMode: "ok" answers Range with 206, "ignore" with a
// full 200, "wrong" with a 206 for the wrong offset.
func flakyServer(t *testing.T, body []byte, cut int, rangeMode string) (*httptest.Server, *atomic.Int32, *atomic.Value) {
	t.Helper()
	var calls atomic.Int32
	var ifRange atomic.Value
	ifRange.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("ETag", `"v1"`)
		if rg := r.Header.Get("Range"); rg != "" && rangeMode != "ignore" {
			ifRange.Store(r.Header.Get("If-Range"))
			from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			if err != nil {
				http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			start := from
			if rangeMode == "wrong" {
				start = 0
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)-start))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body[start:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if n == 1 {
			// write part of the body, then break the connection
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body[:cut])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &ifRange
}

func newTestFetcher(t *testing.T) *Fetcher {
	t.Helper()
	f, err := NewFetcher(HTTPOptions{RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDownloadResumesWithRange(t *testing.T) {
	body := make([]byte, 3<<20)
	_, _ = rand.Read(body)
	srv, calls, ifRange := flakyServer(t, body, 1<<20, "ok")
	rc, err := newTestFetcher(t).OpenURL(context.Background(), srv.URL+"/img")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, not the body", len(got))
	}
	if calls.Load() != 2 {
		t.Fatalf("%d requests, want 2 (one resumed)", calls.Load())
	}
	if ifRange.Load().(string) != `"v1"` {
		t.Fatalf("If-Range = %q, want the first response's ETag", ifRange.Load())
	}
}

func TestDownloadNotResumable(t *testing.T) {
	for _, mode := range []string{"ignore", "wrong"} {
		t.Run("fail server answers Range with "+mode, func(t *testing.T) {
			body := make([]byte, 2<<20)
			_, _ = rand.Read(body)
			srv, _, _ := flakyServer(t, body, 512<<10, mode)
			rc, err := newTestFetcher(t).OpenURL(context.Background(), srv.URL+"/img")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			if !errors.Is(err, ErrNotResumable) {
				t.Fatalf("err = %v, want ErrNotResumable (the caller restarts and re-hashes)", err)
			}
		})
	}
}
