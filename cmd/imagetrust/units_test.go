package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestSystemdUnits: the units of etc/systemd pass `systemd-analyze verify`
// (the machine's systemd, 252 on Debian 12: no key it does not know, none
// in the wrong section), with ExecStart pointed at the built binary; and
// each daemon's unit has no start rate limit (StartLimitIntervalSec=0 in
// [Unit]: a slow Keystone or a crash loop must not leave it failed for
// good) and is not restarted on 78 (credentials refused). Before, the
// units had systemd's default limit, 5 starts in 10 s.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	bin := ostest.Binary(t)
	dir := t.TempDir()
	units, err := filepath.Glob("../../etc/systemd/imagetrust-*")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units: %v", err)
	}
	var paths []string
	for _, u := range units {
		if !strings.HasSuffix(u, ".service") && !strings.HasSuffix(u, ".timer") {
			continue
		}
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/local/bin/imagetrust", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		switch filepath.Base(u) {
		case "imagetrust-sync.service", "imagetrust-crl.service", "imagetrust-proxy.service":
			unit, _, _ := strings.Cut(text, "\n[Service]\n")
			if !strings.Contains(unit, "\nStartLimitIntervalSec=0\n") {
				t.Errorf("%s: no StartLimitIntervalSec=0 in [Unit]", u)
			}
			for _, want := range []string{"\nRestart=on-failure\n", "\nRestartPreventExitStatus=78\n"} {
				if !strings.Contains(text, want) {
					t.Errorf("%s: no %s", u, strings.TrimSpace(want))
				}
			}
		}
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	// (lines about the host's own units are not the test's)
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "imagetrust") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}
