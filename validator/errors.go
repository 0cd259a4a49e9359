package validator

import "strings"

// VerificationFailure is the type of every error that means the input is not
// trustworthy: a bad or missing signature, an unauthorised signer, an
// expired or revoked certificate, image bytes that don't match. Any other
// error (I/O, network, a Glance outage) is transient or operational and is
// wrapped with %w instead, so callers can tell them apart with errors.As:
// skip a bundle on a VerificationFailure, retry on anything else.
type VerificationFailure struct {
	// Reasons are the named reasons (Reason* constants) of the failure.
	Reasons []string
	err     error
}

// NewVerificationFailure makes a failure with one named reason.
func NewVerificationFailure(reason string, err error) *VerificationFailure {
	return &VerificationFailure{Reasons: []string{reason}, err: err}
}

// Error implements error.
func (e *VerificationFailure) Error() string {
	if e.err == nil {
		return "verification failed: " + strings.Join(e.Reasons, ", ")
	}
	return "verification failed: " + e.err.Error()
}

// Unwrap returns the underlying error.
func (e *VerificationFailure) Unwrap() error { return e.err }

// Has reports whether reason is among the failure's reasons.
func (e *VerificationFailure) Has(reason string) bool {
	for _, r := range e.Reasons {
		if r == reason {
			return true
		}
	}
	return false
}
