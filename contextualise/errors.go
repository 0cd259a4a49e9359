package contextualise

import "fmt"

// MaxUserData is Nova's limit on the user_data field: characters of base64.
const MaxUserData = 65535

// maxUserDataBytes is the largest file whose base64 fits MaxUserData.
const maxUserDataBytes = MaxUserData / 4 * 3

// TooLargeError says the merged user data does not fit Nova's limit even
// gzip-compressed. Size is the length of the smallest encoding tried (base64
// characters), Limit is the limit and Site what the site's context alone
// takes (its smallest encoding, within Limit: a site context over the limit
// on its own is the site's fault, an ordinary error). The proxy answers it
// with a 400.
type TooLargeError struct {
	Size  int
	Limit int
	Site  int
}

// Error says how large the data is, what the site's part is, and what to do.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("user_data with the site's context is %d base64 characters even gzip-compressed, over Nova's limit of %d; the site's context takes about %d of them: shorten the user data by at least %d characters (gzip-compressed and base64-encoded)", e.Size, e.Limit, e.Site, e.Size-e.Limit)
}

// UserDataError says the request's user data, or another value the user chose
// (the server name in a template), cannot be merged. The proxy answers it with
// a 400; Reason is written for the user.
type UserDataError struct {
	// Field names what the user chose: "" for user_data, else the name
	// of the request's value (the server name).
	Field  string
	Reason string
	Err    error
}

// Error gives the field, the reason and the underlying error.
func (e *UserDataError) Error() string {
	field := e.Field
	if field == "" {
		field = "user_data"
	}
	if e.Err != nil {
		return field + ": " + e.Reason + ": " + e.Err.Error()
	}
	return field + ": " + e.Reason
}

// Unwrap returns the underlying error, if any.
func (e *UserDataError) Unwrap() error { return e.Err }
