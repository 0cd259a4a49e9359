package config

import (
	"strings"
	"testing"
)

// TestParseContextVars: a [contextualise.vars] name like a [contextualise]
// setting (a setting written after the vars header, which TOML makes a
// variable) is refused with its line; other names load (one no template
// can use is warned of by the proxy, as every unused variable).
func TestParseContextVars(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{name: "ok variables", toml: "[contextualise]\ndir = \"/x\"\n[contextualise.vars]\nsquid_proxy = \"http://squid:3128\"\n_x9 = \"1\"\n"},
		{name: "fail dir after the vars header", toml: "[contextualise]\nsite_name = \"S\"\n[contextualise.vars]\nsquid = \"a\"\ndir = \"/etc/imagetrust/contextualise\"\n",
			want: `line 5: contextualise.vars.dir: a variable named like the [contextualise] setting "dir"`},
		{name: "fail site_name after the vars header", toml: "[contextualise.vars]\nsite_name = \"S\"\n", want: `setting "site_name"`},
		{name: "ok a name with a dash loads (the proxy warns: no template can use it)", toml: "[contextualise.vars]\nsquid-proxy = \"a\"\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.toml))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
