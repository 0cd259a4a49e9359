package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of a judged body.
const maxJSONDepth = 64

// errBody is a request body the gate refuses to judge (400).
type errBody struct{ msg string }

func (e *errBody) Error() string { return e.msg }

func bodyErrorf(format string, a ...any) error { return &errBody{msg: fmt.Sprintf(format, a...)} }

// parseStrict decodes a JSON document into map[string]any / []any / string /
// json.Number / bool / nil, refusing what Nova's parser (Python's json.loads)
// and a Go parser could read differently: invalid UTF-8, a byte-order mark,
// duplicate object keys at any depth (Python keeps the last one), trailing
// data, and nesting deeper than maxJSONDepth. NaN and Infinity, which Python
// accepts, are refused because they are not JSON.
func parseStrict(b []byte) (any, error) {
	if !utf8.Valid(b) {
		return nil, bodyErrorf("request body is not valid UTF-8")
	}
	if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		return nil, bodyErrorf("request body starts with a byte-order mark")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bodyErrorf("request body has data after the JSON document")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, bodyErrorf("request body is nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, bodyErrorf("request body is not valid JSON: %v", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, bodyErrorf("request body is not valid JSON: %v", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, bodyErrorf("request body is not valid JSON")
				}
				if _, dup := obj[k]; dup {
					return nil, bodyErrorf("duplicate key %q in request body", truncate(k, 64))
				}
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj[k] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, bodyErrorf("request body is not valid JSON: %v", err)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, bodyErrorf("request body is not valid JSON: %v", err)
			}
			return arr, nil
		default:
			return nil, bodyErrorf("request body is not valid JSON")
		}
	default:
		return t, nil
	}
}

// encodeJSON serialises a value parsed by parseStrict (or any JSON value).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkKeyCase refuses keys of obj that differ from one of the gated names
// only in case (IMAGEREF for imageRef): a case-insensitive reader such as a
// Go struct decoder would take them for the gated key, Nova would not, and
// the gate judges what Nova executes.
func checkKeyCase(obj map[string]any, where string, gated ...string) error {
	for k := range obj {
		for _, g := range gated {
			if k != g && strings.EqualFold(k, g) {
				return bodyErrorf("key %q in %s is a case variant of %q; use %q", truncate(k, 64), where, g, g)
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
