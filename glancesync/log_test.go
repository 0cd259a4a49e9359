package glancesync

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

// tlogWriter sends log lines to t.Log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// logRecord is one line a capturing logger received.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logCapture keeps what a logger logged (and sends it on to t.Log).
type logCapture struct {
	mu   sync.Mutex
	recs []logRecord
}

// lines returns the records logged with msg.
func (c *logCapture) lines(msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.recs {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

type captureHandler struct {
	c     *logCapture
	next  slog.Handler
	attrs []slog.Attr
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.c.mu.Lock()
	h.c.recs = append(h.c.recs, rec)
	h.c.mu.Unlock()
	return h.next.Handle(ctx, r)
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureHandler{c: h.c, next: h.next.WithAttrs(as), attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	return &captureHandler{c: h.c, next: h.next.WithGroup(name), attrs: h.attrs}
}

// captureLogger is testLogger that also keeps every record.
func captureLogger(t testing.TB) (*slog.Logger, *logCapture) {
	c := &logCapture{}
	return slog.New(&captureHandler{c: c, next: slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})}), c
}
