package proxy

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// httpErrorLog is the ErrorLog of the gate's servers and ReverseProxy:
// net/http writes formatted lines ("http: TLS handshake error from
// 1.2.3.4:5678: EOF"), which become one record each with a constant
// message and the line as detail, at a level by what they say: a panic is
// an error, a failed TLS handshake (any port scanner's) informational,
// anything else a warning.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	switch {
	case strings.Contains(line, "panic serving"):
		level = slog.LevelError
	case strings.HasPrefix(line, "http: TLS handshake error"):
		level = slog.LevelInfo
	}
	w.l.Log(context.Background(), level, "http server", "detail", truncate(line, 4096))
	return len(p), nil
}
