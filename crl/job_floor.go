package crl

import (
	"crypto/x509"
	"math/big"
	"strings"
)

// The rollback floor from the catalogue. The cache (crl.cache_dir) keeps
// the number of the last CRL accepted of each CA and scope; when it is
// lost (a new host, a wiped /var/lib), nothing of it would be left, and
// the first CRL of a CA seen again, however old, would become the new
// baseline. But every image the job flagged (revoked, hold) records the
// CRL that said so: its number (PropRevCRLNumber) and its CA and scope
// (PropRevCRLScope, CRLScopeID: a digest of the CA's name AND public key,
// and of the CRL's issuingDistributionPoint). That CRL was accepted, so a
// CRL of the same CA, key and scope numbered below it is older than one
// accepted before: a rollback, refused with or without the cache.
//
// The floor is per CRLScopeID, never per issuer name: a CA re-keyed under
// the same name is another CA whose CRLs are numbered on their own (and a
// CRL of another distribution point or kind of the same CA too), so its
// lower numbers are never refused for the old key's. Records flagged
// before the scope was recorded (a number, no PropRevCRLScope) give no
// floor: their number cannot be tied to one key and scope, and a floor
// applied to the wrong one would refuse a legitimate CA's CRLs for as long
// as the image keeps its flag.

// floorMark is the highest CRL number recorded for one CRLScopeID, and an
// image that records it (for the refusal's message).
type floorMark struct {
	number *big.Int
	image  string
}

// catalogueFloor reads the rollback floor from the listed images: those
// with a catalogue record (not aliases) the job flagged revoked or hold,
// with a well-formed recorded CRL scope and number.
func catalogueFloor(imgs []Image) map[string]floorMark {
	var out map[string]floorMark
	for _, img := range imgs {
		p := img.Properties
		if !isRecord(p) {
			continue
		}
		if v := p[PropGlobalValidity]; v != StateRevoked && v != StateHold {
			continue
		}
		scope := p[PropRevCRLScope]
		if !wellFormedScopeID(scope) {
			continue
		}
		n, ok := new(big.Int).SetString(p[PropRevCRLNumber], 10)
		if !ok || n.Sign() < 0 {
			continue
		}
		if cur, seen := out[scope]; seen && cur.number.Cmp(n) >= 0 {
			continue
		}
		if out == nil {
			out = map[string]floorMark{}
		}
		out[scope] = floorMark{number: n, image: img.ID}
	}
	return out
}

// wellFormedScopeID reports whether s is as CRLScopeID writes it: two
// 24-digit lower-case hex digests joined by "/".
func wellFormedScopeID(s string) bool {
	a, b, ok := strings.Cut(s, "/")
	return ok && isHex24(a) && isHex24(b)
}

func isHex24(s string) bool {
	if len(s) != 24 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkFloor refuses (ReasonRollback) a CRL of ca whose number is lower
// than the floor recorded in the catalogue for its CA, key and scope.
// cached says whether the cache held a baseline for that scope (the
// message then need not blame a lost cache).
func checkFloor(floor map[string]floorMark, ca *x509.Certificate, h *x509.RevocationList, cached bool, cacheDir string) error {
	if len(floor) == 0 || h.Number == nil {
		return nil
	}
	m, ok := floorOf(floor, caKey(ca), idpValue(h))
	if !ok || h.Number.Cmp(m.number) >= 0 {
		return nil
	}
	why := "the cache holds an older number (restored from an old backup?)"
	if !cached {
		why = "no cached number to compare with: " + lostCache(cacheDir)
	}
	return wrapf(ReasonRollback, h, "CRL number %s is lower than %s, the number of a CRL of this CA and scope recorded on catalogue image %s (%s); %s",
		h.Number, m.number, m.image, PropRevCRLNumber, why)
}

// floorOf is the floor of a CA (caKey) and scope (issuingDistributionPoint
// value), digested only when the catalogue has a floor at all.
func floorOf(floor map[string]floorMark, caK string, idp []byte) (floorMark, bool) {
	if len(floor) == 0 {
		return floorMark{}, false
	}
	m, ok := floor[scopeID(caK, idp)]
	return m, ok
}

// lostCache says what a CA without a cached rollback baseline means.
func lostCache(dir string) string {
	if dir == "" {
		return "no crl.cache_dir, nothing is kept between runs"
	}
	return "if this is not a first run, the cache at " + dir + " was lost"
}
