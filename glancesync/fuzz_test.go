package glancesync

import (
	"encoding/json"
	"testing"
)

// FuzzParseIndex feeds arbitrary bytes to the HTTPS index parser: it must
// never panic, and what it accepts must be one JSON document, nothing after
// it (docs/formats-index.md), naming a descriptor for every bundle.
func FuzzParseIndex(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"bundles":[{"descriptor":"a.json"}]}`,
		`{"version":1,"bundles":[{"descriptor":"https://x/a.json","signature":"https://x/a.json.p7s"}]}`,
		`{"version":2}`, `[]`, `{"version":1,"bundles":[{"descriptor":"a","descriptor":"b"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseIndex(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted %q, which is not one JSON document", b)
		}
		for i, e := range ix.Bundles {
			if e.Descriptor == "" {
				t.Fatalf("bundle %d accepted without a descriptor", i)
			}
		}
	})
}
