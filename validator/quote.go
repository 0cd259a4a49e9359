package validator

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted is how many bytes of an untrusted value an error message
// quotes: a descriptor may be 64 KiB, and its refusal is logged on every
// sync pass.
const maxQuoted = 80

// quoteShort quotes s for an error message (Go syntax: control characters
// escaped, so a value cannot forge a log line), cut to maxQuoted bytes at
// a character boundary with its full length named.
func quoteShort(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strconv.Quote(s[:n]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
