package validator

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/imagetrust/imagetrust/crl"
)

// revocationIndex holds the CRLs of the trust configuration, each accepted
// only after its signature verified with its issuer's key.
type revocationIndex struct {
	byIssuer map[string]*x509.RevocationList // raw issuer DN -> CRL
	entries  map[string]*x509.RevocationListEntry
}

func newRevocationIndex() *revocationIndex {
	return &revocationIndex{byIssuer: map[string]*x509.RevocationList{}, entries: map[string]*x509.RevocationListEntry{}}
}

// add parses a CRL and keeps it if one of the anchors signed it. Of two CRLs
// of one issuer, the higher CRL number wins.
func (ix *revocationIndex) add(b []byte, anchors []*x509.Certificate) error {
	rl, err := crl.Parse(b)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var issuer *x509.Certificate
	for _, a := range anchors {
		if bytes.Equal(a.RawSubject, rl.RawIssuer) {
			if err := crl.Verify(rl, a); err == nil {
				issuer = a
				break
			}
		}
	}
	if issuer == nil {
		return fmt.Errorf("issuer %q: no trusted CA signed it", rl.Issuer)
	}
	key := string(rl.RawIssuer)
	if old, ok := ix.byIssuer[key]; ok && old.Number != nil && rl.Number != nil && old.Number.Cmp(rl.Number) >= 0 {
		return nil
	}
	ix.byIssuer[key] = rl
	for i := range rl.RevokedCertificateEntries {
		e := &rl.RevokedCertificateEntries[i]
		ix.entries[serialKey(rl.RawIssuer, e.SerialNumber)] = e
	}
	return nil
}

func (ix *revocationIndex) lookup(issuerRaw []byte, serial *big.Int) (*x509.RevocationListEntry, *x509.RevocationList) {
	e, ok := ix.entries[serialKey(issuerRaw, serial)]
	if !ok {
		return nil, nil
	}
	rl := ix.byIssuer[string(issuerRaw)]
	// an entry from a superseded CRL of the same issuer doesn't count
	for i := range rl.RevokedCertificateEntries {
		if &rl.RevokedCertificateEntries[i] == e {
			return e, rl
		}
	}
	return nil, nil
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

// checkChain applies the revocation rule to every certificate of a chain
// (leaf first; the root, a trust anchor, is not checked). It also reports CAs
// without a CRL when requireCRL is set.
func (t *Trust) checkChain(chain []*x509.Certificate, role crl.Role, registeredAt time.Time) (*Revocation, error) {
	for i, c := range chain {
		if i == len(chain)-1 && len(chain) > 1 {
			break // the root
		}
		r := role
		if i > 0 {
			r = crl.RoleCA
		}
		if t.requireCRL {
			if _, ok := t.crls.byIssuer[string(c.RawIssuer)]; !ok {
				return nil, fmt.Errorf("no CRL loaded for %q, the issuer of %q (require_crl is set)", c.Issuer, c.Subject)
			}
		}
		e, rl := t.crls.lookup(c.RawIssuer, c.SerialNumber)
		if e == nil {
			continue
		}
		if e.ReasonCode == crl.ReasonRemoveFromCRL {
			continue
		}
		if crl.RevocationApplies(r, e.ReasonCode, e.RevocationTime, registeredAt, t.strict) {
			return &Revocation{Cert: c, Role: r, Reason: e.ReasonCode, RevokedAt: e.RevocationTime, CRLNumber: rl.Number}, nil
		}
	}
	return nil, nil
}
