// Package oserr bounds the text of OpenStack errors before they are
// logged or reported: gophercloud puts the whole HTTP response body in
// its errors (a mistyped endpoint that answers with a web page, a proxy's
// error page).
package oserr

import (
	"fmt"
	"unicode/utf8"
)

// MaxText is how many bytes of an error's text Capped keeps.
const MaxText = 512

// Capped returns err with its text cut to MaxText bytes (at a character
// boundary, the bytes left out counted); errors.Is and errors.As still see
// the whole error. A nil err stays nil.
func Capped(err error) error {
	if err == nil {
		return nil
	}
	return capped{err}
}

type capped struct{ err error }

func (c capped) Unwrap() error { return c.err }

func (c capped) Error() string {
	s := c.err.Error()
	if len(s) <= MaxText {
		return s
	}
	n := MaxText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:n], len(s)-n)
}
