package validator

import (
	"cmp"
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
// the same as the CRL job's). Of two CRLs of one CA and scope (complete,
// user certificates only, CA certificates only) the higher number wins.
func addCRL(ix *crl.Index, b []byte, anchors []*x509.Certificate, now time.Time) error {
	rl, err := crl.Parse(b)
	if err != nil {
		return err
	}
	if now.IsZero() {
		now = farFuture
	}
	// Whatever the order of the CAs: a refusal after a CA's key verified
	// the CRL (delta, future thisUpdate ...) is the answer; failing that,
	// one saying another key signed it (a re-keyed CA: the CRL is then kept
	// for chain CAs); failing that, the last.
	var last, keyErr, verifiedErr error
	for _, a := range anchors {
		if !crl.SameName(a.RawSubject, rl.RawIssuer) {
			continue
		}
		err := ix.Add(rl, a, now)
		var ce *crl.Error
		if err == nil || (errors.As(err, &ce) && ce.Reason == crl.ReasonRollback) {
			return nil // accepted, or an older CRL of a CA whose newer one is loaded
		}
		switch {
		case ce != nil && (ce.Reason == crl.ReasonSignature || ce.Reason == crl.ReasonWrongIssuer):
			keyErr = err
		case ce != nil && ce.Reason != crl.ReasonNotCRLSigner:
			verifiedErr = err
		}
		last = err
	}
	if err := cmp.Or(verifiedErr, keyErr, last); err != nil {
		return err
	}
	return fmt.Errorf("issuer %q: %w", rl.Issuer, errNoAnchor)
}

// errNoAnchor: no configured CA is the CRL's issuer. Such a CRL is kept for
// the intermediates that chains bring (Trust.chainCRLs).
var errNoAnchor = errors.New("no trusted CA of that name")

// crlsLoaded says how many CRLs the trust holds: its CAs' and, when there
// are any, those kept for the sub-CAs chains bring, which are used too.
func (t *Trust) crlsLoaded() string {
	n := len(t.crls.CRLs())
	if len(t.chainCRLs) == 0 {
		return fmt.Sprintf("%d CRLs loaded", n)
	}
	return fmt.Sprintf("%d CRLs loaded, and %d for sub-CAs", n, len(t.chainCRLs))
}

// chainIndex returns the CRLs of issuer among t.chainCRLs, those signed by
// the CA issuer names and accepted as addCRL accepts an anchor's, as an
// index of their own (nil when there are none). issuer is a CA of a chain
// x509.Verify built to an anchor, not itself configured: an intermediate
// the signature brought. Indexes are built once per issuer.
func (t *Trust) chainIndex(issuer *x509.Certificate) *crl.Index {
	if len(t.chainCRLs) == 0 {
		return nil
	}
	if v, ok := t.chainIx.Load(string(issuer.Raw)); ok {
		ix, _ := v.(*crl.Index)
		return ix
	}
	var ix *crl.Index
	for _, rl := range t.chainCRLs {
		if !crl.SameName(rl.RawIssuer, issuer.RawSubject) {
			continue
		}
		if ix == nil {
			ix = &crl.Index{ClockSkew: t.clockSkew, MaxAge: t.maxAge, KeepFuture: true}
		}
		_ = addCRL(ix, rl.Raw, []*x509.Certificate{issuer}, t.crlNow) // (a CRL another key signed is not used)
	}
	if ix != nil && len(ix.CRLs()) == 0 {
		ix = nil
	}
	v, _ := t.chainIx.LoadOrStore(string(issuer.Raw), ix)
	ix, _ = v.(*crl.Index)
	return ix
}

// Revocation says which certificate of a chain is revoked, and how.
type Revocation struct {
	// Cert is the revoked certificate; Role is its place in the record
	// (the image certificate, the creator's, the approver's, or a CA of
	// one of their chains).
	Cert *x509.Certificate
	Role crl.Role
	// Reason is the CRL entry's reason code (RFC 5280 section 5.3.1;
	// unspecified, 0, when the entry has none), RevokedAt its revocation
	// date.
	Reason    int
	RevokedAt time.Time
	// CRLNumber is the number of the CRL that lists it.
	CRLNumber *big.Int
}

// String says which certificate is revoked, since when and why, for
// refusal messages and logs.
func (r *Revocation) String() string {
	return fmt.Sprintf("%s certificate %q (serial %x) revoked on %s, reason %s", r.Role, SubjectName(r.Cert), r.Cert.SerialNumber, r.RevokedAt.UTC().Format(time.RFC3339), crl.ReasonName(r.Reason))
}

// checkChain applies the revocation rule (crl.RevocationApplies, through
// crl.Index.CheckChain, as the CRL job does) to every certificate of a chain,
// leaf first; the root, a trust anchor, is not checked. With require_crl, a
// certificate whose issuer has no CRL is an error.
func (t *Trust) checkChain(chain []*x509.Certificate, role crl.Role, registeredAt time.Time) (*Revocation, error) {
	// the CRLs of the chain's CAs that no configured CA is (see chainIndex)
	var own []*crl.Index
	for _, ca := range chain[min(1, len(chain)):] {
		if ix := t.chainIndex(ca); ix != nil {
			own = append(own, ix)
		}
	}
	if t.requireCRL {
		// a CRL the revocation lookup would search for the certificate
		// (crl.Index.CoveringScope: its issuer's name and, when both
		// carry one, key identifier, of a scope that takes it in), as the
		// CRL job asks: a CRL of another key of the same name (a re-keyed
		// CA) is never searched for it, so it does not meet require_crl
		for _, ref := range crl.ChainRefs(chain, role) {
			has := len(t.crls.CoveringScope(ref)) > 0
			for _, ix := range own {
				has = has || len(ix.CoveringScope(ref)) > 0
			}
			if !has {
				return nil, fmt.Errorf("no CRL loaded for %q, the issuer of %q (require_crl is set)", IssuerName(ref.Cert), SubjectName(ref.Cert))
			}
		}
	}
	// (all together: a hold of a chain CA's old key is released by its
	// re-key's later CRL in the trust store, as in the CRL job's one index)
	rev := crl.CheckChainAll(append([]*crl.Index{t.crls}, own...), chain, role, registeredAt, t.strict)
	if rev == nil {
		return nil, nil
	}
	return &Revocation{Cert: rev.Cert, Role: rev.Role, Reason: rev.Reason, RevokedAt: rev.RevokedAt, CRLNumber: rev.CRLNumber}, nil
}
