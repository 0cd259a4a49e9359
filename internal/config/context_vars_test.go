package config

import (
	"strings"
	"testing"
)

// TestParseContextVars: a [contextualise.vars] name no template can refer
// to, or one named like a [contextualise] setting (a setting written after
// the vars header, which TOML makes a variable), is refused with its line.
func TestParseContextVars(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{name: "ok variables", toml: "[contextualise]\ndir = \"/x\"\n[contextualise.vars]\nsquid_proxy = \"http://squid:3128\"\n_x9 = \"1\"\n"},
		{name: "fail dir after the vars header", toml: "[contextualise]\nsite_name = \"S\"\n[contextualise.vars]\nsquid = \"a\"\ndir = \"/etc/imagetrust/contextualise\"\n",
			want: `line 5: contextualise.vars.dir: a variable named like the [contextualise] setting "dir"`},
		{name: "fail site_name after the vars header", toml: "[contextualise.vars]\nsite_name = \"S\"\n", want: `setting "site_name"`},
		{name: "fail a name with a dash", toml: "[contextualise.vars]\nsquid-proxy = \"a\"\n", want: `"squid-proxy" can never be used`},
		{name: "fail a name starting with a digit", toml: "[contextualise.vars]\n9lives = \"a\"\n", want: `"9lives" can never be used`},
		{name: "fail a dotted name", toml: "[contextualise.vars]\n\"a.b\" = \"a\"\n", want: `"a.b" can never be used`},
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
