package config

import (
	"errors"
	"fmt"
	"strings"
)

// keyError is a configuration error about one key (its dotted name, an
// array of tables' entries indexed: "sync.source[1]"); Parse prefixes the
// line the key is on.
type keyError struct {
	key string
	msg string
}

func (e *keyError) Error() string { return e.msg }

// keyErrorf is a keyError whose message is the key's name then format's.
func keyErrorf(key, format string, a ...any) error {
	return &keyError{key: key, msg: key + fmt.Sprintf(format, a...)}
}

// atLine prefixes err with the line of its key, where lines knows it.
func atLine(err error, lines map[string]int) error {
	var ke *keyError
	if errors.As(err, &ke) {
		if n, ok := lines[ke.key]; ok {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return err
}

// keyLines maps the keys and table headers of a TOML document to the line
// each is first defined on: dotted names with their quotes removed, and for
// the entries of an array of tables also with the index ("sync.source" and
// "sync.source[1].path"). It is only a locator for error messages: the
// document has been decoded already, and a key it can't place has no line.
func keyLines(doc string) map[string]int {
	out := map[string]int{}
	set := func(k string, n int) {
		if _, ok := out[k]; !ok {
			out[k] = n
		}
	}
	// set also every prefix of a dotted key: an unknown implicit table is
	// reported by its own name
	setAll := func(prefix []string, idxPrefix string, parts []string, n int) {
		for i := range parts {
			k := strings.Join(append(append([]string{}, prefix...), parts[:i+1]...), ".")
			set(k, n)
			if idxPrefix != "" {
				set(idxPrefix+"."+strings.Join(parts[:i+1], "."), n)
			}
		}
	}
	var table []string // the current table's name
	tableIdx := ""     // the same with its array index, if an array of tables
	count := map[string]int{}
	depth := 0 // open brackets of a multi-line array or inline table
	inML := "" // the delimiter of the multi-line string we are in
	for i, line := range strings.Split(doc, "\n") {
		n := i + 1
		if inML != "" {
			if strings.Contains(line, inML) {
				inML = ""
			}
			continue
		}
		if depth > 0 {
			d, ml := scanValue(line)
			depth += d
			inML = ml
			continue
		}
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			array := strings.HasPrefix(s, "[[")
			h := strings.TrimLeft(s, "[")
			end := strings.Index(h, "]")
			if end < 0 {
				continue
			}
			table = splitKey(h[:end])
			name := strings.Join(table, ".")
			setAll(nil, "", table, n)
			tableIdx = ""
			if array {
				tableIdx = fmt.Sprintf("%s[%d]", name, count[name])
				count[name]++
				set(tableIdx, n)
			}
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		setAll(table, tableIdx, splitKey(k), n)
		depth, inML = scanValue(v)
	}
	return out
}

// splitKey splits a TOML key into its parts, unquoted.
func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// scanValue reads (part of) a value: how many brackets and braces it leaves
// open, and the delimiter of a multi-line string it leaves open ("" for
// none). Strings and comments are skipped.
func scanValue(v string) (depth int, openML string) {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '"', '\'':
			delim := string(c)
			if strings.HasPrefix(v[i:], strings.Repeat(delim, 3)) {
				delim = strings.Repeat(delim, 3)
			}
			j := i + len(delim)
			for j < len(v) && !strings.HasPrefix(v[j:], delim) {
				if c == '"' && v[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(v) {
				if len(delim) == 3 {
					return depth, delim
				}
				return depth, ""
			}
			i = j + len(delim) - 1
		}
	}
	return depth, ""
}
