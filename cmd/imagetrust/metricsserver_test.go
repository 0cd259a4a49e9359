package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestDaemonListenTaken: a sync or CRL daemon whose listen address is
// taken exits 2 naming the key, not starting without its /metrics and
// /healthz. Before, it logged "metrics listener failed" and ran on, so the
// monitoring meant to watch it never came up (and the test waited for a
// daemon that never exited: the context below ends it).
func TestDaemonListenTaken(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, _ := daemonConfig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := strings.Replace(string(text), "[sync]\n", "[sync]\nlisten = \""+addr+"\"\n", 1)
	s = strings.Replace(s, "[crl]\n", "[crl]\nlisten = \""+addr+"\"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"OS_CLOUD": "mirror", "OS_CLIENT_CONFIG_FILE": c.CloudsYAML}
	for _, cmd := range []string{"sync", "crl"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out, errb bytes.Buffer
		code := run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }},
			[]string{cmd, "--config", path})
		cancel()
		if code != exitUsage || !strings.Contains(errb.String(), cmd+".listen") || !strings.Contains(errb.String(), addr) {
			t.Errorf("%s daemon on a taken listen address: exit %d, want %d naming %s.listen and %s:\n%s", cmd, code, exitUsage, cmd, addr, errb.String())
		}
	}
}
