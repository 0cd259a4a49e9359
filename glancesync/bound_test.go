package glancesync

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostileImageServer serves body in one of two hostile ways: "drip" sends
// one byte every 300 ms (each request well within any per-request
// timeout's reach for a long time); "cut" sends one byte per connection and
// then breaks it, answering Range requests correctly, so that every
// request makes progress.
func hostileImageServer(t *testing.T, body []byte, mode string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		from := 0
		if rg := r.Header.Get("Range"); rg != "" {
			from, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(from)+"-"+strconv.Itoa(len(body)-1)+"/"+strconv.Itoa(len(body)))
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)-from))
		if from > 0 {
			w.WriteHeader(http.StatusPartialContent)
		}
		for i := from; i < len(body); i++ {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if mode == "cut" {
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					_ = conn.Close()
				}
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestDownloadResumesBounded: a server that cuts every connection after one
// byte cannot make a download out of one request per byte; the download
// fails after HTTPOptions.MaxResumes resumed requests.
func TestDownloadResumesBounded(t *testing.T) {
	body := make([]byte, 300)
	_, _ = rand.Read(body)
	srv, calls := hostileImageServer(t, body, "cut")
	f, err := NewFetcher(HTTPOptions{RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second, Retries: 2, MaxResumes: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("fail one byte per connection", func(t *testing.T) {
		rc, err := f.OpenURL(context.Background(), srv.URL+"/img")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		n, err := io.Copy(io.Discard, rc)
		if !errors.Is(err, ErrTooManyResumes) {
			t.Fatalf("read %d bytes, err %v; want ErrTooManyResumes", n, err)
		}
		if c := calls.Load(); c > 11 {
			t.Fatalf("%d requests for one download, want at most 1 + MaxResumes", c)
		}
	})
}

// TestTransferBounded: an image server that drips its bytes, or cuts every
// connection after one, cannot hold a pass up. Against the real Glance:
// the transfer fails within its bound (transfer_slack plus the size at
// transfer_min_rate_kib) as a transient error (the pass reports an error,
// a later pass retries), is not tried again in the pass, leaves the image
// queued without data, and the pass mirrors the other images.
func TestTransferBounded(t *testing.T) {
	e := newEnv(t)
	for _, mode := range []string{"drip", "cut"} {
		t.Run("fail "+mode, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			body := make([]byte, 4<<10)
			_, _ = rand.Read(body)
			srv, calls := hostileImageServer(t, body, mode)
			slow := w.publish(dir, spec{vo: "atlas", tag: "slow-" + mode, image: body, uri: srv.URL + "/slow.img"})
			good := w.publish(dir, spec{vo: "atlas", tag: "fine-" + mode})
			f, err := NewFetcher(HTTPOptions{RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second, Retries: 1, MaxResumes: 5})
			if err != nil {
				t.Fatal(err)
			}
			o := e.options(t, w, nil)
			o.Sources = []Source{&DirSource{Root: dir, AllowedVOs: []string{"atlas"}, Fetcher: f, AllowPrivate: true}}
			o.Sync.Retire = "keep"
			o.Sync.TransferSlack.Duration = 3 * time.Second
			o.Sync.TransferMinRateKiB = 1024
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			start := time.Now()
			r, err := s.Run(ctx)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("pass: %v after %s", err, took)
			}
			// No bound on took: the outcome below names the bound that
			// ended the transfer, which a pass that waited out the drip
			// (or ctx) would not; the time is only logged.
			t.Logf("the pass took %s", took)
			var out []Outcome
			for _, oc := range r.Find(slow.id) {
				if oc.Action != ActionAlias {
					out = append(out, oc)
				}
			}
			want := ErrTransferTooSlow.Error()
			if mode == "cut" {
				want = ErrTooManyResumes.Error()
			}
			if len(out) != 1 || out[0].Action != ActionFailed || !strings.Contains(out[0].Detail, want) || r.Errors != 1 {
				t.Fatalf("slow image: %d errors, outcomes %+v; want one failure saying %q", r.Errors, out, want)
			}
			if mode == "cut" && calls.Load() > 10 {
				t.Errorf("%d requests to the cutting server in one pass", calls.Load())
			}
			// Glance drops the broken-off stream and restores queued,
			// when it gets to it (the wait ends with the test's context)
			wctx, wcancel := untilTestDeadline(t)
			defer wcancel()
			im := waitNotBusy(t, wctx, e, slow.id, func() string { return "" })
			if im.Status != StatusQueued || im.Size != 0 {
				t.Errorf("slow image: %s with size %d, want queued without data", im.Status, im.Size)
			}
			if im := e.get(t, good.id); im.Status != StatusActive {
				t.Errorf("the other image: %s, want active", im.Status)
			}
		})
	}
}
