package glancesync

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSourceTextCapped: the text a hostile source chooses (an index's
// unknown key or an index entry's reference, megabytes long; a
// descriptor's unknown key, up to 64 KiB) is cut in every log line and
// outcome of a pass, which still names the failed check; an over-long
// reference is refused without a request.
func TestSourceTextCapped(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	const long = 1 << 20
	key := strings.Repeat("k", long/2)
	// a descriptor is at most validator.MaxDescriptorSize (64 KiB)
	badDesc := `{"` + strings.Repeat("k", 60<<10) + `":1}`

	// an index whose only fault is an unknown key of half a megabyte
	badIndex := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = rw.Write([]byte(`{"version":1,"bundles":[],"` + key + `":1}`))
	}))
	t.Cleanup(badIndex.Close)
	// an index of a megabyte-long reference, of a non-http one, and of a
	// descriptor with an unknown key of 60 KiB
	var longRequests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/index.json":
			_, _ = rw.Write([]byte(`{"version":1,"bundles":[` +
				`{"descriptor":"/` + strings.Repeat("a", long) + `.json"},` +
				`{"descriptor":"ftp://h/` + strings.Repeat("b", long) + `.json"},` +
				`{"descriptor":"d.json"}]}`))
		case "/d.json":
			_, _ = rw.Write([]byte(badDesc))
		case "/d.json.p7s":
			_, _ = rw.Write([]byte("x"))
		default:
			longRequests.Add(1)
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte(badDesc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.json.p7s"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	f := newTestFetcher(t)
	o.Sources = append(o.Sources,
		&IndexSource{URL: badIndex.URL + "/index.json", AllowedVOs: []string{"cms"}, Fetcher: f},
		&IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"lhcb"}, Fetcher: f})
	log, logs := captureLogger(t)
	o.Logger = log
	r := run(t, o)

	const most = maxErrText + 64 // capText's "… (N bytes more)"
	logs.mu.Lock()
	recs := append([]logRecord(nil), logs.recs...)
	logs.mu.Unlock()
	for _, rec := range recs {
		for k, v := range rec.attrs {
			if len(v) > most {
				t.Errorf("log %q: %s is %d bytes: %.100q…", rec.msg, k, len(v), v)
			}
		}
	}
	for _, oc := range r.Outcomes {
		if len(oc.Location) > most || len(oc.Detail) > most {
			t.Errorf("outcome %s/%s: location of %d bytes, detail of %d bytes", oc.Action, oc.Reason, len(oc.Location), len(oc.Detail))
		}
	}
	// each still names its check
	want := map[string]string{
		"source listing failed; nothing of its VOs is retired this pass":      "unknown field",
		"bundle unreadable; nothing of the source's VOs is retired this pass": ErrRefTooLong.Error(),
	}
	for msg, check := range want {
		found := false
		for _, rec := range logs.lines(msg) {
			found = found || strings.Contains(rec.attrs["err"], check)
		}
		if !found {
			t.Errorf("no %q log naming %q", msg, check)
		}
	}
	refused := 0
	for _, rec := range logs.lines("bundle refused") {
		if !strings.Contains(rec.attrs["detail"], "unknown field") {
			t.Errorf("refusal does not name its check: %.200q", rec.attrs["detail"])
		}
		refused++
	}
	if refused != 2 {
		t.Errorf("%d refusals logged, want 2 (the directory's and the index's descriptor)", refused)
	}
	if n := longRequests.Load(); n != 0 {
		t.Errorf("the over-long reference was requested %d times", n)
	}
}
