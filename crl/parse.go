package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// MaxSize is the largest CRL imagetrust reads (DER or PEM), 256 MiB. A CRL
// of a million entries is about 50 MB.
const MaxSize = 256 << 20

// Decode returns the DER of one CRL given as DER or PEM ("X509 CRL"). It
// refuses empty input, sizes over MaxSize, several PEM blocks, other PEM
// labels and anything after the CRL. Errors are *Error with ReasonParse.
func Decode(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, refuse(ReasonParse, "", "empty input")
	}
	if len(b) > MaxSize {
		return nil, refuse(ReasonParse, "", "%d bytes: larger than %d", len(b), MaxSize)
	}
	der := b
	if t := bytes.TrimLeft(b, " \t\r\n"); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		blk, rest := pem.Decode(t)
		if blk == nil {
			return nil, refuse(ReasonParse, "", "malformed PEM")
		}
		if blk.Type != "X509 CRL" {
			return nil, refuse(ReasonParse, "", "PEM block %q is not an X509 CRL", blk.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, refuse(ReasonParse, "", "data after the PEM block (one CRL per input)")
		}
		der = blk.Bytes
	}
	_, whole, rest, ok := expect(der, tagSequence)
	if !ok {
		return nil, refuse(ReasonParse, "", "not a DER SEQUENCE (garbage or truncated)")
	}
	if len(rest) != 0 {
		return nil, refuse(ReasonParse, "", "%d bytes of trailing data", len(rest))
	}
	return whole, nil
}

// Parse reads one CRL, DER or PEM, with every entry: the standard library's
// full form. For large CRLs prefer ParseList, which keeps entries compact.
// Errors are *Error with ReasonParse.
func Parse(b []byte) (*x509.RevocationList, error) {
	der, err := Decode(b)
	if err != nil {
		return nil, err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, &Error{Reason: ReasonParse, Err: err}
	}
	return rl, nil
}

var errNoCA = errors.New("no CA certificate given")

func issuerName(rl *x509.RevocationList) string {
	if rl == nil {
		return ""
	}
	return rl.Issuer.String()
}

func wrapf(reason string, rl *x509.RevocationList, format string, args ...any) *Error {
	return &Error{Reason: reason, Issuer: issuerName(rl), Err: fmt.Errorf(format, args...)}
}
