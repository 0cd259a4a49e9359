package proxy

import "strings"

// CanonicalUUID returns the canonical form (lower-case, hyphenated 8-4-4-4-12)
// of ref when Nova would accept ref as a UUID, and ok=false otherwise.
//
// It mirrors oslo.utils' uuidutils.is_uuid_like, which Nova uses for the
// JSON-schema "uuid" format: every "urn:" and then every "uuid:" is removed
// (case-sensitively, anywhere in the string), braces are stripped from both
// ends, every hyphen is removed, and what is left, lower-cased, must be 32
// ASCII hex digits. So upper case, missing or misplaced hyphens, {braces} and
// urn:uuid: prefixes are all UUIDs to Nova, and all are canonicalised here.
func CanonicalUUID(ref string) (string, bool) {
	s := strings.ReplaceAll(ref, "urn:", "")
	s = strings.ReplaceAll(s, "uuid:", "")
	s = strings.Trim(s, "{}")
	s = strings.ReplaceAll(s, "-", "")
	if len(s) != 32 {
		return "", false
	}
	var b [36]byte
	j := 0
	for i := 0; i < 32; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		b[j] = c
		j++
	}
	return string(b[:]), true
}
