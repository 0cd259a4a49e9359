package contextualise

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// A template is a fragment's text split at its {{ name }} references. Only
// substitution exists: no conditionals, no functions, no escapes. Any "{{"
// that is not a well-formed reference to a known variable is refused at load.
type template struct {
	lits  [][]byte // len(lits) == len(names)+1
	names []string // variable names, in order of appearance
}

var (
	tmplRef   = regexp.MustCompile(`\{\{[ \t]*([A-Za-z0-9_.]+)[ \t]*\}\}`)
	extraName = regexp.MustCompile(`^var\.[A-Za-z_][A-Za-z0-9_]*$`)
	safeValue = regexp.MustCompile(`^[A-Za-z0-9._:@+=,/][A-Za-z0-9._:@+=,/-]*$`)
	// safeName is what a user-chosen value may hold: POSIX's portable
	// filename characters, not leading '-'. No '/' (one path component),
	// no '=' (an assignment or a dd/make/env operand), no ':' or '@' (an
	// scp or rsync remote).
	safeName   = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)
	fixedNames = map[string]func(Vars) string{
		"image_uuid":  func(v Vars) string { return v.ImageUUID },
		"tag":         func(v Vars) string { return v.Tag },
		"vo":          func(v Vars) string { return v.VO },
		"site_name":   func(v Vars) string { return v.SiteName },
		"project_id":  func(v Vars) string { return v.ProjectID },
		"user_id":     func(v Vars) string { return v.UserID },
		"server_name": func(v Vars) string { return v.ServerName },
	}
)

// userChosen maps the variables whose values come from the requesting user
// to what the user calls them; a bad value there is the user's error (400),
// elsewhere the site's.
var userChosen = map[string]string{"server_name": "server name"}

// knownVariables lists the names a template may use, for error messages.
func knownVariables() string {
	names := make([]string, 0, len(fixedNames)+1)
	for n := range fixedNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprint(append(names, "var.NAME"))
}

// parseTemplate splits src at its variable references.
func parseTemplate(src []byte) (template, error) {
	var t template
	rest := src
	for {
		i := bytes.Index(rest, []byte("{{"))
		if i < 0 {
			t.lits = append(t.lits, rest)
			return t, nil
		}
		m := tmplRef.FindSubmatchIndex(rest[i:])
		if m == nil || m[0] != 0 {
			return template{}, fmt.Errorf("line %d: %q is not a template reference {{ name }}; literal {{ is not supported", lineOf(src, len(src)-len(rest)+i), snippet(rest[i:]))
		}
		name := string(rest[i+m[2] : i+m[3]])
		if _, ok := fixedNames[name]; !ok && !extraName.MatchString(name) {
			return template{}, fmt.Errorf("line %d: unknown template variable %q (known: %s)", lineOf(src, len(src)-len(rest)+i), name, knownVariables())
		}
		t.lits = append(t.lits, rest[:i])
		t.names = append(t.names, name)
		rest = rest[i+m[1]:]
	}
}

// render writes the template with each reference replaced by value(i, name).
func (t template) render(value func(i int, name string) string) []byte {
	var b bytes.Buffer
	for i, lit := range t.lits {
		b.Write(lit)
		if i < len(t.names) {
			b.WriteString(value(i, t.names[i]))
		}
	}
	return b.Bytes()
}

// errMissingVar marks a var.NAME the proxy's configuration does not define.
var errMissingVar = errors.New("variable not defined")

// lookup returns the value of a template variable, checked to be safe in any
// context a site author might place it: YAML, a shell command line, a path.
//
// Every value is non-empty, made of letters, digits and . _ : @ + = , / -
// (not leading -), so no quoting, word splitting, globbing, option or command
// injection; and none has a "." or ".." path segment, so DIR/{{ name }} never
// leaves DIR. A value the user chooses (userChosen: the server name) is held
// to less: letters, digits and . _ - only (not leading -), so it has no '/'
// at all and DIR/{{ server_name }} is one entry of DIR. Site-set values
// (site_name, var.NAME) may hold '/' and ':', for a URL such as
// http://squid.example.org:3128.
func (v Vars) lookup(name string) (string, error) {
	var val string
	if f, ok := fixedNames[name]; ok {
		val = f(v)
	} else {
		x, ok := v.Extra[name[len("var."):]]
		if !ok {
			return "", fmt.Errorf("template variable %s: %w", name, errMissingVar)
		}
		val = x
	}
	if val == "" {
		// never rendered empty: "rm -rf /scratch/{{ server_name }}" must
		// not become "rm -rf /scratch/"
		err := fmt.Errorf("template variable %s has no value here", name)
		if f, ok := userChosen[name]; ok {
			return "", &UserDataError{Field: f, Reason: "this site's boot context uses it, and the request does not give one; give one", Err: err}
		}
		return "", err
	}
	if f, ok := userChosen[name]; ok {
		if !safeName.MatchString(val) || dotSegment(val) {
			return "", &UserDataError{
				Field:  f,
				Reason: "this site's boot context uses it, so it may hold only letters, digits and . _ - (not first), and may not be . or ..; choose another",
				Err:    fmt.Errorf("value %q of template variable %s is not a single safe name", val, name),
			}
		}
		return val, nil
	}
	if !safeValue.MatchString(val) {
		return "", fmt.Errorf("value %q of template variable %s has characters the site context cannot take safely (allowed: letters, digits and . _ : @ + = , / -, not leading -)", val, name)
	}
	if dotSegment(val) {
		return "", fmt.Errorf("value %q of template variable %s has a . or .. path segment, which would step out of a directory the site context names", val, name)
	}
	return val, nil
}

// dotSegment reports whether a '/'-separated segment of s is "." or "..".
func dotSegment(s string) bool {
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func lineOf(b []byte, off int) int { return bytes.Count(b[:off], []byte("\n")) + 1 }

func snippet(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}
