package glancesync

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRedirectDowngradeRefused: a source's https server that redirects
// (here to the same documents over plain http) does not move a request off
// TLS: the index, a descriptor and an image download each fail with
// ErrRedirectDowngrade, without a retry and without a request to the http
// server, whose answer anyone on the way could forge (an index listing
// fewer bundles would make the sync retire images). Redirects from https
// to https, and from http to http, are still followed; a redirect loop
// stops.
func TestRedirectDowngradeRefused(t *testing.T) {
	var plainCalls atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainCalls.Add(1)
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("plain " + r.URL.Path))
	}))
	t.Cleanup(plain.Close)
	var tlsCalls atomic.Int64
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tlsCalls.Add(1)
		switch {
		case strings.HasPrefix(r.URL.Path, "/down/"):
			http.Redirect(w, r, plain.URL+"/"+strings.TrimPrefix(r.URL.Path, "/down/"), http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/moved/"):
			http.Redirect(w, r, "/"+strings.TrimPrefix(r.URL.Path, "/moved/"), http.StatusMovedPermanently)
		default:
			_, _ = w.Write([]byte("secure " + r.URL.Path))
		}
	}))
	t.Cleanup(secure.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := NewFetcher(HTTPOptions{CAFile: ca, RequestTimeout: time.Minute, DownloadTimeout: time.Minute, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for _, p := range []string{"index.json", "x.json"} {
		tlsCalls.Store(0)
		_, err := f.GetSmall(ctx, secure.URL+"/down/"+p, MaxIndexSize)
		if !errors.Is(err, ErrRedirectDowngrade) {
			t.Fatalf("GET %s redirected to http: err %v, want ErrRedirectDowngrade", p, err)
		}
		if n := tlsCalls.Load(); n != 1 {
			t.Errorf("GET %s: %d requests to the https server, want 1 (no retry)", p, n)
		}
	}
	if _, err := f.OpenURL(ctx, secure.URL+"/down/img"); !errors.Is(err, ErrRedirectDowngrade) {
		t.Fatalf("image download redirected to http: err %v, want ErrRedirectDowngrade", err)
	}
	if n := plainCalls.Load(); n != 0 {
		t.Fatalf("%d requests reached the http server", n)
	}

	// https to https, http to http: followed
	if b, err := f.GetSmall(ctx, secure.URL+"/moved/index.json", MaxIndexSize); err != nil || string(b) != "secure /index.json" {
		t.Fatalf("https to https: %q, %v", b, err)
	}
	rc, err := f.OpenURL(ctx, plain.URL+"/img")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "plain /img" {
		t.Fatalf("http: %q, %v", b, err)
	}
	plainCalls.Store(0)
	if _, err := f.GetSmall(ctx, plain.URL+"/loop", MaxIndexSize); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("redirect loop: err %v", err)
	}
	if n := plainCalls.Load(); n != maxRedirects {
		t.Errorf("redirect loop: %d requests, want %d (no retry)", n, maxRedirects)
	}
}

// TestResponseHeadersBounded: a source's server sending megabytes of
// headers (not counted in a listing's bytes, and read again on every retry
// and every document) is refused past MaxResponseHeaderBytes; ordinary
// headers pass.
func TestResponseHeadersBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := MaxResponseHeaderBytes / 2
		if r.URL.Path == "/huge" {
			n = 1 << 20
		}
		w.Header().Set("X-Pad", strings.Repeat("p", n))
		_, _ = w.Write([]byte("doc"))
	}))
	t.Cleanup(srv.Close)
	f := newTestFetcher(t)
	if b, err := f.GetSmall(context.Background(), srv.URL+"/ok", MaxDescriptorSize); err != nil || string(b) != "doc" {
		t.Fatalf("ordinary headers: %q, %v", b, err)
	}
	if _, err := f.GetSmall(context.Background(), srv.URL+"/huge", MaxDescriptorSize); err == nil || !strings.Contains(err.Error(), "header") {
		t.Fatalf("1 MiB of headers: err %v, want a refusal naming the headers", err)
	}
	if _, err := f.OpenURL(context.Background(), srv.URL+"/huge"); err == nil {
		t.Fatal("image download with 1 MiB of headers: no error")
	}
}
