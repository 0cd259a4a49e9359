package cms

// Error is the type of every error that means the CMS input is malformed,
// uses a refused algorithm, or does not verify. Callers map it to their own
// verification-failure type with errors.As; anything else (a failing
// crypto.Signer, say) is an ordinary error.
type Error struct {
	// Reason says what failed, in a few words ("message digest mismatch").
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil {
		return "cms: " + e.Reason + ": " + e.Err.Error()
	}
	return "cms: " + e.Reason
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, err error) *Error { return &Error{Reason: reason, Err: err} }
