package proxy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestOverloadLogNamesTheBusiest: the summary line names the remotes
// refused most often in its interval, not the first 8 seen: a flood from
// one address that begins after 8 others were refused once each is named,
// with its count, and the others' refusals beyond the 8 named are in
// other_remotes.
func TestOverloadLogNamesTheBusiest(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	l := newOverloadLog(slog.New(slog.NewJSONHandler(logs, nil)), "first", "summary")
	l.interval = time.Hour                          // (flushed by the test)
	l.note(RejectQueueFull, "192.0.2.200", "req-0") // the full line
	for i := range 10 {
		l.note(RejectQueueFull, fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("req-a%d", i))
	}
	for i := range 20 {
		l.note(RejectQueueTimeout, "203.0.113.9", fmt.Sprintf("req-f%d", i))
	}
	l.flush()
	l.timer.Stop()
	var summary struct {
		Msg          string `json:"msg"`
		Count        int    `json:"count"`
		Remotes      string `json:"remotes"`
		OtherRemotes int    `json:"other_remotes"`
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), logs.String())
	}
	if err := json.Unmarshal([]byte(lines[1]), &summary); err != nil {
		t.Fatal(err)
	}
	want := "203.0.113.9=20,192.0.2.0=1,192.0.2.1=1,192.0.2.2=1,192.0.2.3=1,192.0.2.4=1,192.0.2.5=1,192.0.2.6=1"
	if summary.Msg != "summary" || summary.Count != 30 || summary.Remotes != want || summary.OtherRemotes != 3 {
		t.Errorf("summary %+v, want count 30, remotes %s, other_remotes 3", summary, want)
	}
}

// TestOverloadLogCycle: a summary re-arms the overload log's timer for
// the next interval, and a quiet interval stops it, the next refusal then
// logged in full again. (A timer not re-armed after a summary would leave
// the log "active" for good: every later refusal counted, never written.)
// The test plays the timer's part: it stops it and calls flush.
func TestOverloadLogCycle(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	l := newOverloadLog(slog.New(slog.NewJSONHandler(logs, nil)), "first", "summary")
	l.interval = time.Hour
	count := func(msg string) int { return strings.Count(logs.String(), `"msg":"`+msg+`"`) }
	fire := func() bool { // the interval ends; whether the timer is armed again
		l.timer.Stop()
		l.flush()
		return l.timer.Stop()
	}
	l.note(RejectQueueFull, "192.0.2.1", "req-1")
	l.note(RejectQueueFull, "192.0.2.1", "req-2")
	if !fire() || count("summary") != 1 {
		t.Fatalf("after a summary: the timer not armed again, or no summary: %s", logs.String())
	}
	l.note(RejectQueueFull, "192.0.2.1", "req-3")
	if !fire() || count("summary") != 2 {
		t.Fatalf("second interval: %s", logs.String())
	}
	if fire() || count("summary") != 2 {
		t.Fatalf("a quiet interval: the timer armed again, or a summary: %s", logs.String())
	}
	l.note(RejectQueueTimeout, "192.0.2.2", "req-4")
	l.timer.Stop()
	if count("first") != 2 || count("summary") != 2 {
		t.Errorf("after a quiet interval the next refusal is in full: %s", logs.String())
	}
}
