package crl

import "fmt"

// Reasons a CRL is refused. Each refusal carries exactly one of them.
const (
	// ReasonParse: the bytes are not one well-formed CRL (garbage, truncated,
	// trailing data, several PEM blocks, too large, malformed entries).
	ReasonParse = "parse"
	// ReasonSignature: the signature does not verify with the issuing CA's key.
	ReasonSignature = "signature"
	// ReasonWrongIssuer: no trusted CA has the CRL's issuer name (and key
	// identifier), or the CA given is not its issuer.
	ReasonWrongIssuer = "wrong-issuer"
	// ReasonNotCRLSigner: the issuing CA is not a CA or lacks the cRLSign key usage.
	ReasonNotCRLSigner = "not-a-crl-signer"
	// ReasonFuture: thisUpdate lies beyond now plus the allowed clock skew.
	ReasonFuture = "future"
	// ReasonRollback: the CRL number is lower than the last accepted one of
	// the issuer, or equal to it with different content.
	ReasonRollback = "rollback"
	// ReasonStale: the CRL is past nextUpdate plus the grace period.
	ReasonStale = "stale"
	// ReasonDelta: delta CRLs are refused; imagetrust only reads complete CRLs.
	ReasonDelta = "delta-unsupported"
	// ReasonUnsupported: a critical extension imagetrust does not understand,
	// or an indirect CRL (certificateIssuer entries, partitioned by reasons).
	ReasonUnsupported = "unsupported-extension"
	// ReasonFetch: the CRL could not be obtained (network, HTTP status, file).
	ReasonFetch = "fetch"
)

// Error is a refused CRL: why (one of the Reason constants), whose
// (the issuer as RFC 4514 text, when known) and the underlying error.
type Error struct {
	Reason string
	Issuer string
	Err    error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Issuer != "" {
		return fmt.Sprintf("crl %s: %s: %v", e.Issuer, e.Reason, e.Err)
	}
	return fmt.Sprintf("crl: %s: %v", e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func refuse(reason, issuer string, format string, args ...any) *Error {
	return &Error{Reason: reason, Issuer: issuer, Err: fmt.Errorf(format, args...)}
}
