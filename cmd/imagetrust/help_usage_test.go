package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpUsageLines: `-h` of a command prints a usage line that names
// every option the command takes, and no empty "options:" heading for a
// command that has none. Before, `imagetrust pki init -h` said
// "[--vo VO] DIR" although `imagetrust pki -h` and the README give
// --force, `imagetrust inspect -h` ended in an empty "options:", and the
// command list gave verify's exit statuses without 2 (usage), which the
// README lists.
func TestHelpUsageLines(t *testing.T) {
	help := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
			getenv: func(string) string { return "" }}, args)
		if code != exitOK {
			t.Fatalf("%v: exit %d, want %d:\n%s", args, code, exitOK, errb.String())
		}
		return out.String() + errb.String()
	}
	if h := help("pki", "init", "-h"); !strings.Contains(h, "usage: imagetrust pki init [--vo VO] [--force] DIR") {
		t.Errorf("pki init -h:\n%s", h)
	}
	// "Every subcommand takes -h": pki -h gave the usage line alone, not
	// what --vo and --force do
	if h := help("pki", "-h"); !strings.Contains(h, "-vo string") || !strings.Contains(h, "-force") {
		t.Errorf("pki -h lacks the options of pki init:\n%s", h)
	}
	if h := help("inspect", "-h"); strings.Contains(h, "options:") || !strings.Contains(h, "usage: imagetrust inspect NAME.json") {
		t.Errorf("inspect -h:\n%s", h)
	}
	if h := help("help"); !strings.Contains(h, "exit 0 valid, 3 expired, 1 invalid, 2 usage or configuration error") {
		t.Errorf("help: verify's line does not give every exit status (README: 2 for usage):\n%s", h)
	}
	// exit 78 (Keystone refused the credentials at start) was in the
	// operator guide and no -h
	for _, c := range []string{"sync", "crl", "proxy"} {
		if h := help(c, "-h"); !strings.Contains(h, "78 at start, Keystone refused") {
			t.Errorf("%s -h does not give exit 78:\n%s", c, h)
		}
	}
	if h := help("verify", "-h"); strings.Contains(h, "78") {
		t.Errorf("verify -h gives the daemons' exit 78:\n%s", h)
	}
	if h := help("sign", "-h"); !strings.Contains(h, "options:") || !strings.Contains(h, "-key-pass-file") {
		t.Errorf("sign -h lost its options:\n%s", h)
	}
}
