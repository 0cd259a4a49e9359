package main

import (
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// renewalLogInterval is the period of the renewal failures' summary lines.
const renewalLogInterval = time.Minute

// renewalLog writes the ERROR lines of token renewals that failed
// (keystoneLogin.reauth): during an outage every request whose token
// Keystone no longer validates renews, and fails, and one line each
// would flood the log. The first failure of each cause (renewalCauses'
// label) is logged at once, in full ("token renewal with Keystone
// failed"): a new kind of failure is news, and there are few kinds; the
// failures that repeat a cause already logged are counted and written as
// one summary line at the end of the interval. An interval with no
// failure ends the outage for the log: the next failure is logged in
// full again. The metric (imagetrust_keystone_renewal_failures_total)
// counts every failure, whatever is logged.
type renewalLog struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	timer    *time.Timer
	active   bool            // an interval is open
	logged   map[string]bool // causes logged in full since the log was quiet
	counts   map[string]int  // failures of this interval not logged, by cause
	host     string          // of the last failure not logged
	last     string          // its cause's text
}

func newRenewalLog(log *slog.Logger) *renewalLog {
	return &renewalLog{log: log, interval: renewalLogInterval, logged: map[string]bool{}, counts: map[string]int{}}
}

// note logs (or counts) one failed renewal with Keystone at host: label
// and cause are renewalCause's.
func (l *renewalLog) note(host, label, cause string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		l.active = true
		if l.timer == nil {
			l.timer = time.AfterFunc(l.interval, l.flush)
		} else {
			l.timer.Reset(l.interval)
		}
	}
	if !l.logged[label] {
		l.logged[label] = true
		l.log.Error("token renewal with Keystone failed", "keystone", host, "cause", cause)
		return
	}
	l.counts[label]++
	l.host, l.last = host, cause
}

// flush ends an interval: a summary line of the failures not logged, if
// any (and another interval begins), else the log goes quiet.
func (l *renewalLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0
	for _, n := range l.counts {
		total += n
	}
	if total == 0 {
		l.active = false
		clear(l.logged)
		return
	}
	args := []any{"keystone", l.host, "count", total}
	for _, c := range slices.Sorted(maps.Keys(l.counts)) {
		args = append(args, c, l.counts[c])
	}
	args = append(args, "last_cause", l.last, "interval", l.interval.String())
	l.log.Error("token renewals with Keystone failed again (summary)", args...)
	clear(l.counts)
	l.timer.Reset(l.interval)
}
