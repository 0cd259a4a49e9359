package contextualise

import "fmt"

// MaxUserData is Nova's limit on the user_data field: characters of base64.
const MaxUserData = 65535

// TooLargeError says the merged user data does not fit Nova's limit even
// gzip-compressed. Size is the length of the smallest encoding tried (base64
// characters) and Limit is the limit. The proxy answers it with a 400.
type TooLargeError struct {
	Size  int
	Limit int
}

// Error says how large the data is and what to do.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("user_data with the site's context is %d base64 characters even gzip-compressed, over Nova's limit of %d; shorten the user data", e.Size, e.Limit)
}

// UserDataError says the request's user data, or another value the user chose
// (the server name in a template), cannot be merged. The proxy answers it with
// a 400; Reason is written for the user.
type UserDataError struct {
	Reason string
	Err    error
}

// Error gives the reason and the underlying error.
func (e *UserDataError) Error() string {
	if e.Err != nil {
		return "user_data: " + e.Reason + ": " + e.Err.Error()
	}
	return "user_data: " + e.Reason
}

// Unwrap returns the underlying error, if any.
func (e *UserDataError) Unwrap() error { return e.Err }
