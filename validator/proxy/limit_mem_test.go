package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/contextualise"
)

// BenchmarkGatedMemory measures what one gated request allocates (B/op),
// the basis of GatedRequestCost: a create of about 1 MiB (the default
// max_body), without user data (the body is a 1 MiB metadata value), and
// with gzipped user data that expands to the merge's 1 MiB bound, merged
// with a site fragment by contextualise as the command does.
//
//	go test ./validator/proxy -run '^$' -bench GatedMemory -benchmem
func BenchmarkGatedMemory(b *testing.B) {
	f := catalogue(b)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer upstream.Close()
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "all"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "all", "motd.sh"), []byte("#!/bin/sh\necho site\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	site, err := contextualise.LoadSite(dir)
	if err != nil {
		b.Fatal(err)
	}
	hook := func(bt Boot, ud string, has bool) (string, bool, error) {
		out, err := site.Merge(ud, has, contextualise.Vars{ImageUUID: bt.Image.ID, VO: "atlas", Tag: "worker"})
		return out, out != "", err
	}
	u, _ := url.Parse(upstream.URL)
	p, err := New(Options{Upstream: u, Lookup: f.glance, Decider: f.trust, MirrorProject: mirrorProject,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), UserData: hook})
	if err != nil {
		b.Fatal(err)
	}
	// text that gzips about 2:1, 1 MiB of it: its base64 fits in 1 MiB
	rng := rand.New(rand.NewPCG(1, 2))
	var text bytes.Buffer
	for text.Len() < 1<<20-64 {
		fmt.Fprintf(&text, "%016x\n", rng.Uint64())
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(text.Bytes())
	_ = zw.Close()
	var zeros bytes.Buffer
	zw = gzip.NewWriter(&zeros)
	_, _ = zw.Write(make([]byte, 1<<20-4096))
	_ = zw.Close()
	bodies := map[string]string{
		// expands to the merge's bound and gzips back under Nova's limit:
		// the whole merge runs
		"userdata-zeros-1MiB": `{"server":{"name":"vm","flavorRef":"1","imageRef":"` + idGood + `","user_data":"` +
			base64.StdEncoding.EncodeToString(zeros.Bytes()) + `"}}`,
		"metadata-1MiB": `{"server":{"name":"vm","flavorRef":"1","imageRef":"` + idGood + `","metadata":{"k":"` + strings.Repeat("x", 1<<20-200) + `"}}}`,
		"userdata-gzip-1MiB": `{"server":{"name":"vm","flavorRef":"1","imageRef":"` + idGood + `","user_data":"` +
			base64.StdEncoding.EncodeToString(gz.Bytes()) + `"}}`,
	}
	for name, body := range bodies {
		if len(body) > 1<<20 {
			b.Fatalf("%s: %d bytes", name, len(body))
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v2.1/servers", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				p.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted && (w.Code != http.StatusBadRequest || name != "userdata-gzip-1MiB") {
					b.Fatalf("%d %s", w.Code, w.Body.Bytes())
				}
			}
		})
	}
}
