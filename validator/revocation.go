package validator

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/imagetrust/imagetrust/crl"
)

// farFuture stands for "now" when TrustOptions.Now is zero: CRLs are then
// accepted whatever their thisUpdate.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// addCRL parses a CRL and adds it to the index if one of the anchors issued
// and signed it (crl.Index: signature, CRL signer, delta and rollback rules,
// the same as the CRL job's). Of two CRLs of one CA the higher number wins.
func addCRL(ix *crl.Index, b []byte, anchors []*x509.Certificate, now time.Time) error {
	rl, err := crl.Parse(b)
	if err != nil {
		return err
	}
	if now.IsZero() {
		now = farFuture
	}
	var last error
	for _, a := range anchors {
		if !bytes.Equal(a.RawSubject, rl.RawIssuer) {
			continue
		}
		err := ix.Add(rl, a, now)
		var ce *crl.Error
		if err == nil || (errors.As(err, &ce) && ce.Reason == crl.ReasonRollback) {
			return nil // accepted, or an older CRL of a CA whose newer one is loaded
		}
		last = err
	}
	if last != nil {
		return last
	}
	return fmt.Errorf("issuer %q: no trusted CA of that name", rl.Issuer)
}

// Revocation says which certificate of a chain is revoked, and how.
type Revocation struct {
	Cert      *x509.Certificate
	Role      crl.Role
	Reason    int
	RevokedAt time.Time
	CRLNumber *big.Int
}

func (r *Revocation) String() string {
	return fmt.Sprintf("%s certificate %q (serial %x) revoked on %s, reason %s", r.Role, r.Cert.Subject, r.Cert.SerialNumber, r.RevokedAt.UTC().Format(time.RFC3339), crl.ReasonName(r.Reason))
}

// checkChain applies the revocation rule (crl.RevocationApplies, through
// crl.Index.CheckChain, as the CRL job does) to every certificate of a chain,
// leaf first; the root, a trust anchor, is not checked. With require_crl, a
// certificate whose issuer has no CRL is an error.
func (t *Trust) checkChain(chain []*x509.Certificate, role crl.Role, registeredAt time.Time) (*Revocation, error) {
	if t.requireCRL {
		for i, c := range chain {
			if i == len(chain)-1 && len(chain) > 1 {
				break
			}
			if !t.crls.HasCRL(c.RawIssuer) {
				return nil, fmt.Errorf("no CRL loaded for %q, the issuer of %q (require_crl is set)", c.Issuer, c.Subject)
			}
		}
	}
	rev := t.crls.CheckChain(chain, role, registeredAt, t.strict)
	if rev == nil {
		return nil, nil
	}
	return &Revocation{Cert: rev.Cert, Role: rev.Role, Reason: rev.Reason, RevokedAt: rev.RevokedAt, CRLNumber: rev.CRLNumber}, nil
}
