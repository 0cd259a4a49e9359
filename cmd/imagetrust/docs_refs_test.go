package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// operatorDocs are the documents operators and publishers follow to the
// letter, relative to the repository root.
func operatorDocs(t *testing.T) map[string]string {
	t.Helper()
	files := []string{"README.md", "devstack/README.md", "etc/contextualise/README.md", "docs/recipes/openssl-publish.sh"}
	mds, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mds {
		files = append(files, strings.TrimPrefix(f, "../../"))
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile("../../" + f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

// commandFlags runs `imagetrust COMMAND -h` for every command and returns
// the options each one's help lists.
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	flagLine := regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)
	out := map[string]map[string]bool{}
	for name := range commands {
		var o, e bytes.Buffer
		code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &o, stderr: &e,
			getenv: func(string) string { return "" }}, []string{name, "-h"})
		if code != exitOK {
			t.Fatalf("%s -h: exit %d:\n%s", name, code, e.String())
		}
		out[name] = map[string]bool{"h": true}
		for _, m := range flagLine.FindAllStringSubmatch(o.String()+e.String(), -1) {
			out[name][m[1]] = true
		}
	}
	return out
}

// TestDocsCommandFlagsExist: every `imagetrust COMMAND … --flag` the
// documents show (in a code block, continued lines joined, or inline)
// names an option that COMMAND's -h lists. Operators paste these; a flag
// renamed in the code and not in the guide fails here first.
func TestDocsCommandFlagsExist(t *testing.T) {
	flags := commandFlags(t)
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, n)
	}
	sort.Strings(names)
	invocation := regexp.MustCompile(`imagetrust (` + strings.Join(names, "|") + `)\b([^` + "`" + `\n]*)`)
	// what ends one command on its line: another imagetrust, a pipe, a
	// comment, a sequence
	end := regexp.MustCompile(`imagetrust |[|;#]|&&`)
	flag := regexp.MustCompile(`(?:^|[\s\[(])--?([a-z][a-z0-9-]*)`)
	continuation := regexp.MustCompile(`\\\n\s*`)
	seen := 0
	for f, doc := range operatorDocs(t) {
		for _, line := range strings.Split(continuation.ReplaceAllString(doc, " "), "\n") {
			for _, m := range invocation.FindAllStringSubmatch(line, -1) {
				args := m[2]
				if loc := end.FindStringIndex(args); loc != nil {
					args = args[:loc[0]]
				}
				for _, fm := range flag.FindAllStringSubmatch(args, -1) {
					seen++
					if !flags[m[1]][fm[1]] {
						t.Errorf("%s: `imagetrust %s` has no option --%s: %s", f, m[1], fm[1], strings.TrimSpace(line))
					}
				}
			}
		}
	}
	if seen < 50 {
		t.Errorf("only %d documented options found: is the pattern still right?", seen)
	}
}

// TestDocsCitedTestsExist: every TestXxx a document cites (each claim
// names its test) is a test function somewhere in the repository. A test
// renamed or removed would leave the claim unbacked.
func TestDocsCitedTestsExist(t *testing.T) {
	have := map[string]bool{}
	funcTest := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range funcTest.FindAllStringSubmatch(string(b), -1) {
			have[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cited := regexp.MustCompile(`\bTest[A-Z][A-Za-z0-9_]*`)
	n := 0
	for f, doc := range operatorDocs(t) {
		for _, c := range cited.FindAllString(doc, -1) {
			n++
			if !have[c] {
				t.Errorf("%s cites %s, which is no test function of the repository", f, c)
			}
		}
	}
	if n == 0 {
		t.Error("no test cited in the documents: is the pattern still right?")
	}
}

// TestDocsLinksResolve: every Markdown link from a document to a file or
// directory of the repository ([text](path), relative to the document)
// points at one that exists.
func TestDocsLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)]*)?\)`)
	for f, doc := range operatorDocs(t) {
		if !strings.HasSuffix(f, ".md") {
			continue
		}
		for _, m := range link.FindAllStringSubmatch(doc, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Join("../..", filepath.Dir(f), target)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, target)
			}
		}
	}
}
