package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"slices"
	"time"
)

// CRL is a CRL accepted into an Index: the compact list, the CA certificate
// it verified against and where it came from.
type CRL struct {
	*List
	// CA is the certificate whose key signed the CRL.
	CA *x509.Certificate
	// Source names where the CRL came from (URL, file), for reports.
	Source string

	// caK and scope are caKey(CA) and scopeOf(Header), set by AddList
	// (judging asks for them for every certificate of every record).
	caK, scope string
	keyed      bool
	// maxAge is the MaxAge of the index that accepted it
	maxAge time.Duration
	// Future: its thisUpdate lay beyond now plus ClockSkew when it was
	// accepted (Index.KeepFuture)
	Future bool
	// nameKey is NameKey(Header.RawIssuer)
	nameKey string
	// points are idpPoints of Header's issuingDistributionPoint (namesPoint:
	// it names a distribution point), set by AddList
	points     []string
	namesPoint bool
}

// idpPoints is (the URIs its issuingDistributionPoint names, whether it
// names a distribution point at all), computed once.
func (c *CRL) idpPoints() ([]string, bool) {
	if !c.keyed {
		idp := idpValue(c.Header)
		return idpURIs(idp), idp != nil && idpNamesPoint(idp)
	}
	return c.points, c.namesPoint
}

// issuerKey is NameKey(c.Header.RawIssuer), computed once.
func (c *CRL) issuerKey() string {
	if !c.keyed {
		return NameKey(c.Header.RawIssuer)
	}
	return c.nameKey
}

// caKey is caKey(c.CA), computed once.
func (c *CRL) caKey() string {
	if !c.keyed {
		return caKey(c.CA)
	}
	return c.caK
}

// scopeOf is scopeOf(c.Header), computed once.
func (c *CRL) scopeOf() string {
	if !c.keyed {
		return scopeOf(c.Header)
	}
	return c.scope
}

// DefaultMaxAge is how long after its thisUpdate a CRL without nextUpdate
// is taken as fresh when Index.MaxAge is not set. RFC 5280 5.1.2.5 requires
// nextUpdate of a conforming CRL issuer (and the IGTF profiles a CRL
// lifetime of at most 30 days, re-issued at least 7 days before it ends):
// a CRL without it promises nothing, and without a bound would never go
// stale, however long its CA had stopped publishing.
const DefaultMaxAge = 7 * 24 * time.Hour

// NextUpdate returns the time after which the CRL is stale (before grace):
// its nextUpdate, or, for a CRL without one, its thisUpdate plus maxAge
// (DefaultMaxAge when maxAge is not positive).
func NextUpdate(h *x509.RevocationList, maxAge time.Duration) time.Time {
	if !h.NextUpdate.IsZero() {
		return h.NextUpdate
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return h.ThisUpdate.Add(maxAge)
}

// NextUpdate is NextUpdate(c.Header, the MaxAge of the index that accepted
// c).
func (c *CRL) NextUpdate() time.Time { return NextUpdate(c.Header, c.maxAge) }

// Stale reports whether the CRL is past its NextUpdate plus grace at now:
// nextUpdate, or for a CRL without one, thisUpdate plus the index's MaxAge
// (DefaultMaxAge).
func (c *CRL) Stale(now time.Time, grace time.Duration) bool {
	return now.After(c.NextUpdate().Add(grace))
}

// Index holds accepted CRLs by issuer and answers "is this serial of this
// issuer revoked?". Lookups always go by issuer AND serial: a CRL of another
// CA revoking the same serial number never matches.
//
// An Index is not safe for concurrent Add; lookups may run concurrently
// once adding is done.
type Index struct {
	// ClockSkew is how far a CRL's thisUpdate may lie beyond now.
	ClockSkew time.Duration
	// MaxAge is how long after its thisUpdate a CRL without nextUpdate
	// is fresh (CRL.Stale); zero: DefaultMaxAge.
	MaxAge time.Duration
	// KeepFuture accepts a CRL whose thisUpdate lies beyond now plus
	// ClockSkew (a CA whose clock runs ahead) instead of refusing it
	// (ReasonFuture), marked CRL.Future: its entries revoke and hold as
	// any CRL's, but its thisUpdate outranks no other CRL (it lifts no
	// hold, newerSpeaksFor and rekeyReleases; it supersedes none and
	// stands for no CA's freshness over a CRL dated in time, Superseded,
	// StaleFor). For services without a cache of the CA's previous CRL
	// (the verifier's trust store), where refusing it would lose every
	// revocation it lists until they are restarted or reloaded.
	KeepFuture bool

	byRaw  map[string][]*CRL // NameKey of the raw issuer DN
	byName map[string][]*CRL // nameStringKey of the issuer DN as pkix.Name.String() prints it
}

// caKey identifies a CA by name and key: a CA re-keyed under the same name
// is another CA.
func caKey(ca *x509.Certificate) string {
	return string(ca.RawSubject) + "\x00" + string(ca.RawSubjectPublicKeyInfo)
}

// The kinds of certificate a CRL lists (RFC 5280 5.2.5, its
// issuingDistributionPoint): all, only end-entity or only CA certificates.
const (
	scopeComplete = ""
	scopeUser     = "user"
	scopeCA       = "ca"
)

// scopeOf is the kind of certificate a CRL lists. (Which distribution
// point it speaks for is compared with the certificate's apart, by
// takesPoints, and only for whether the CRL speaks for it, never for
// whether its entries revoke: a CRL of the CA that lists a serial revokes
// that certificate, whichever point it names.)
func scopeOf(h *x509.RevocationList) string {
	switch user, ca := idpOnly(idpValue(h)); {
	case user:
		return scopeUser
	case ca:
		return scopeCA
	}
	return scopeComplete
}

// scopeKey identifies the CRLs of ca of one scope: the CA, and the CRL's
// whole issuingDistributionPoint when it has one (which kinds of
// certificate, which distribution point). RFC 5280 numbers CRLs per issuer
// and scope, so a CRL replaces, and is checked for rollback against, only a
// CRL of its own scope: an ARL and a user-only CRL of one CA, or the CRLs
// of two distribution points, stay side by side, and each is searched for
// revocations. A CRL without the extension keeps caKey. A scope the CA no
// longer publishes stays, and is still searched; its staleness stops
// counting once a newer CRL of the CA speaks for the same certificates
// (Index.StaleFor, Index.Superseded).
func scopeKey(ca *x509.Certificate, h *x509.RevocationList) string {
	return scopeKeyOf(caKey(ca), string(idpValue(h)))
}

// scopeKeyOf is scopeKey from a caKey and an issuingDistributionPoint value
// ("" for none).
func scopeKeyOf(caK, idp string) string {
	if idp == "" {
		return caK
	}
	return caK + "\x00idp\x00" + idp
}

// idpValue is the value of h's issuingDistributionPoint (nil: none).
func idpValue(h *x509.RevocationList) []byte {
	for _, e := range h.Extensions {
		if e.Id.Equal(oidExtIDP) {
			return e.Value
		}
	}
	return nil
}

// takesIn reports whether a CRL of the scope speaks for a certificate of
// the role: a user-only CRL not for a CA, a CA-only CRL only for one.
func takesIn(scope string, role Role) bool {
	switch scope {
	case scopeUser:
		return role != RoleCA
	case scopeCA:
		return role == RoleCA
	}
	return true
}

// Add accepts a CRL parsed by the standard library (see AddList).
func (ix *Index) Add(rl *x509.RevocationList, ca *x509.Certificate, now time.Time) error {
	if rl == nil {
		return refuse(ReasonParse, "", "no CRL")
	}
	l, err := ParseList(rl.Raw)
	if err != nil {
		return err
	}
	_, err = ix.AddList(l, ca, now, "")
	return err
}

// AddList accepts l as the CRL of ca if Verify passes, its thisUpdate is not
// beyond now+ClockSkew (ReasonFuture; with KeepFuture such a CRL is
// accepted, marked CRL.Future), it has a CRL number (ReasonParse) and
// that number is not lower than the one of a CRL of the same CA and scope
// (scopeKey) already in the index, nor equal to it with other content
// (ReasonRollback). A newer CRL replaces the older of its scope; the same
// CRL again is a no-op. Staleness is not checked here: see CRL.Stale and
// Index.StaleFor. Errors are *Error.
func (ix *Index) AddList(l *List, ca *x509.Certificate, now time.Time, source string) (*CRL, error) {
	if err := Verify(l.Header, ca); err != nil {
		return nil, err
	}
	h := l.Header
	future := h.ThisUpdate.After(now.Add(ix.ClockSkew))
	if future && !ix.KeepFuture {
		return nil, wrapf(ReasonFuture, h, "thisUpdate %s is after now %s plus clock skew %s",
			h.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ix.ClockSkew)
	}
	if h.Number == nil {
		return nil, wrapf(ReasonParse, h, "no CRL number: rollback can't be detected")
	}
	if ix.byRaw == nil {
		ix.byRaw = map[string][]*CRL{}
		ix.byName = map[string][]*CRL{}
	}
	c := &CRL{List: l, CA: ca, Source: source, caK: caKey(ca), scope: scopeOf(h), keyed: true, maxAge: ix.MaxAge, nameKey: NameKey(h.RawIssuer), Future: future}
	if idp := idpValue(h); idp != nil && idpNamesPoint(idp) {
		c.points, c.namesPoint = idpURIs(idp), true
	}
	raw, name := c.nameKey, nameStringKey(h.Issuer.String())
	k := scopeKeyOf(c.caK, string(idpValue(h)))
	for i, old := range ix.byRaw[raw] {
		if scopeKeyOf(old.caKey(), string(idpValue(old.Header))) != k {
			continue
		}
		if err := CheckNumber(h, old.Header.Number, old.Fingerprint(), l.Fingerprint()); err != nil {
			return nil, err
		}
		if old.Fingerprint() == l.Fingerprint() {
			return old, nil
		}
		ix.byRaw[raw][i] = c
		for j, o := range ix.byName[name] {
			if o == old {
				ix.byName[name][j] = c
			}
		}
		return c, nil
	}
	ix.byRaw[raw] = append(ix.byRaw[raw], c)
	ix.byName[name] = append(ix.byName[name], c)
	return c, nil
}

// CheckNumber refuses a CRL whose number is lower than last, or equal to
// last with another fingerprint (ReasonRollback). last nil accepts anything.
func CheckNumber(h *x509.RevocationList, last *big.Int, lastSum, sum [32]byte) error {
	if last == nil || h.Number == nil {
		return nil
	}
	switch h.Number.Cmp(last) {
	case -1:
		return wrapf(ReasonRollback, h, "CRL number %s is lower than %s, accepted before", h.Number, last)
	case 0:
		if lastSum != sum {
			return wrapf(ReasonRollback, h, "CRL number %s was accepted before with other content", h.Number)
		}
	}
	return nil
}

// CRLs returns every accepted CRL.
func (ix *Index) CRLs() []*CRL {
	var out []*CRL
	for _, cs := range ix.byRaw {
		out = append(out, cs...)
	}
	return out
}

// HasCRL reports whether a CRL of the issuer (raw DN; compared as NameKey
// compares names) is in the index.
func (ix *Index) HasCRL(issuerRaw []byte) bool { return len(ix.byRaw[NameKey(issuerRaw)]) > 0 }

// HasCRLFor reports whether a CRL of c's issuer whose scope takes in c is
// in the index: not one that lists only CA certificates for an end entity,
// nor one that lists only user certificates for a CA, nor one of a
// distribution point c does not name (takesPoints).
func (ix *Index) HasCRLFor(c *x509.Certificate) bool {
	role := RoleImage
	if c.IsCA {
		role = RoleCA
	}
	r := Ref{Role: role, DistributionPoints: c.CRLDistributionPoints, PointsKnown: true}
	for _, crl := range ix.byRaw[NameKey(c.RawIssuer)] {
		if takesIn(crl.scopeOf(), role) && takesPoints(crl, r) {
			return true
		}
	}
	return false
}

// Lookup finds the entry of a certificate given by its issuer's raw DN and
// its serial number.
func (ix *Index) Lookup(issuerRaw []byte, serial *big.Int) (*x509.RevocationListEntry, *x509.RevocationList, bool) {
	for _, c := range ix.byRaw[NameKey(issuerRaw)] {
		if e, ok := c.Find(serial); ok {
			return e, c.Header, true
		}
	}
	return nil, nil, false
}

// Ref names one certificate of an image's chains for a revocation check:
// either from the certificate itself (IssuerRaw set) or from a catalogue
// record (Issuer as pkix.Name.String() prints it, AKI maybe empty).
type Ref struct {
	Role Role
	// Issuer is the issuer DN in RFC 4514 form (pkix.Name.String()).
	Issuer string
	// IssuerRaw is the issuer's raw DER DN; when set it is used instead of Issuer.
	IssuerRaw []byte
	Serial    *big.Int
	// AKI is the certificate's authorityKeyIdentifier, if any.
	AKI []byte
	// Cert is the certificate, when known.
	Cert *x509.Certificate
	// IssuerIssuer and IssuerAKI name the certificate's issuer's own
	// issuer (RFC 4514) and key (the issuer certificate's
	// authorityKeyIdentifier), when its issuer's certificate is known (the
	// next certificate of the chain): a CRL signed by another key of the
	// issuer's name, certified by that same issuer and key, speaks for the
	// certificate too (Covering).
	IssuerIssuer string
	IssuerAKI    []byte
	// DistributionPoints are the URIs the certificate's
	// cRLDistributionPoints extension names (the fullName
	// uniformResourceIdentifiers, as x509.Certificate.CRLDistributionPoints
	// reads them), and PointsKnown says they were read from the
	// certificate (ChainRefs; the CRL job from the certificates of the
	// record's imagetrust_signature): then a CRL partitioned by
	// distribution point speaks for the certificate only when it names one
	// of them (takesPoints). A Ref whose points are not known (PointsKnown
	// false) is spoken for by every CRL of its kind, whatever point it
	// names, as before partitions were told apart.
	DistributionPoints []string
	PointsKnown        bool
}

// takesPoints reports whether the CRL c speaks for the certificate r names
// as far as distribution points go (RFC 5280 6.3.3 (b)(2)(i), 5.2.5): a CRL
// whose issuingDistributionPoint names no distribution point (a complete
// CRL, or one of a kind of certificates only, which takesIn judges) speaks
// for every certificate; one that names a point speaks for a certificate
// only when one of its URIs equals one of the certificate's
// (r.DistributionPoints). URIs are compared exactly, as bytes, as
// crypto/x509 and idpURIs read them from the DER (no case folding, no
// normalisation: a CA names its points the same way in its certificates
// and its CRLs). A point named otherwise than by a URI (a directoryName, a
// nameRelativeToCRLIssuer) matches no certificate, and a certificate
// naming no point is spoken for by complete CRLs only. When r's points are
// not known (PointsKnown false) every CRL speaks for it.
func takesPoints(c *CRL, r Ref) bool {
	points, names := c.idpPoints()
	if !names || !r.PointsKnown {
		return true
	}
	for _, p := range points {
		if slices.Contains(r.DistributionPoints, p) {
			return true
		}
	}
	return false
}

// Covering returns the CRLs that speak for the certificate named by r: the
// CRLs whose issuer DN equals r's issuer DN (raw DER when r has it, else the
// RFC 4514 string; compared as RFC 5280 7.1 compares names, NameKey), and whose CA's subjectKeyIdentifier equals r's AKI when
// both are present. With several CAs of one name and no AKI to tell them
// apart, all their CRLs speak for it: a revocation in any of them counts.
//
// A CRL signed by another key of the issuer's name speaks for it too when
// that key's CA certificate was issued by the same CA (name and key
// identifier) as the certificate's issuer (r.IssuerIssuer, r.IssuerAKI):
// the CA re-keyed under its name, its new key certified within the
// certificate's own path, so by a key that leads to the same trust anchor
// (RFC 5280 6.3.3 (b), (f): the CRL's issuer is the certificate's, its
// signer's path ends at the certificate's anchor). A CA rolling a key
// over may publish only the new key's CRL, listing the old key's
// certificates too (serial numbers are unique per issuer name, RFC 5280
// 4.1.2.2). A namesake certified elsewhere (another root of the name) does
// not speak for it.
func (ix *Index) Covering(r Ref) []*CRL {
	var cands []*CRL
	if r.IssuerRaw != nil {
		cands = ix.byRaw[NameKey(r.IssuerRaw)]
	} else {
		cands = ix.byName[nameStringKey(r.Issuer)]
	}
	if len(r.AKI) == 0 {
		return cands
	}
	var out []*CRL
	for _, c := range cands {
		if len(c.CA.SubjectKeyId) == 0 || bytes.Equal(c.CA.SubjectKeyId, r.AKI) || rekeyOf(c.CA, r) {
			out = append(out, c)
		}
	}
	return out
}

// rekeyOf reports whether ca, a CA of r's issuer name with another key,
// was certified by the CA that certified r's issuer (the same issuer name
// and key identifier): the same CA re-keyed, in the same path.
func rekeyOf(ca *x509.Certificate, r Ref) bool {
	return len(r.IssuerAKI) > 0 && bytes.Equal(ca.AuthorityKeyId, r.IssuerAKI) &&
		!bytes.Equal(ca.RawIssuer, ca.RawSubject) && ca.Issuer.String() == r.IssuerIssuer
}

// CoveringScope is Covering without the CRLs whose scope does not take in
// the certificate: of another kind of certificate (takesIn, by r.Role), or
// of a distribution point the certificate does not name (takesPoints, by
// r.DistributionPoints): the CRLs whose presence and freshness speak for
// it (StaleFor; require_crl and the job's RequireCRL when there are none).
// Revocation lookups use every covering CRL, whatever its scope (Check):
// a serial number names one certificate of a CA, whichever CRL lists it,
// and a revocation is never dropped because its CRL's scope does not match
// (fail closed).
func (ix *Index) CoveringScope(r Ref) []*CRL {
	return inScope(ix.Covering(r), r)
}

// inScope is the CRLs of cov whose scope takes in the certificate r names
// (its kind, r.Role, and its distribution points).
func inScope(cov []*CRL, r Ref) []*CRL {
	var out []*CRL
	for _, c := range cov {
		if takesIn(c.scopeOf(), r.Role) && takesPoints(c, r) {
			out = append(out, c)
		}
	}
	return out
}

// StaleFor returns, for the certificate r names, a CRL that shows its
// revocation state is stale at now (nil: fresh). For each CA the covering
// CRLs may be of (CAs can share a name), the one of them that speaks for
// the certificate (CoveringScope: of its kind and, for a CRL naming
// distribution points, of one the certificate names) with the latest
// thisUpdate decides, so a withheld partition's last CRL goes stale for
// the certificates of its point, whatever the other points' CRLs say: an
// old CRL of a scope the CA abandoned, or one an attacker replays, cannot
// make the state look older or fresher than the CA's newest word. The
// CA's keys count together where the new key's CRL speaks for the old
// key's certificates and would release a hold of the old key's CRL
// (rekeyReleases: a CA re-keyed under its name by the same parent, key
// identifiers on both sides, a later CRL dated in time that speaks for
// every certificate of r's kind): the old key's newest CRL going stale
// once the CA publishes only under its new key does not count.
func (ix *Index) StaleFor(r Ref, now time.Time, grace time.Duration) *CRL {
	scoped := ix.CoveringScope(r)
	if len(scoped) == 0 && r.PointsKnown {
		// no CRL of its point: judged by its CA's newest of its kind
		// (staleScope)
		k := r
		k.DistributionPoints, k.PointsKnown = nil, false
		scoped = ix.CoveringScope(k)
	}
	return staleOf(r, scoped, now, grace)
}

// A certificate for which no CRL of its CA speaks by its distribution
// points (takesPoints: the CA partitions its CRLs, and none names a point
// the certificate names) is judged stale by the CA's CRLs of its kind
// whatever points they name (StaleFor, the job's staleFor), as every
// certificate was before partitions were told apart: no fresher than the
// CA's newest word. Else a CA that moved its CRLs to another URL, or
// spells it otherwise in its CRLs than in its certificates, would have
// certificates no staleness ever shows for: whoever withheld every CRL of
// the CA would hide each later revocation of them for good (without
// require_crl, which refuses them). A certificate whose point has a CRL is
// judged by that point's CRLs alone.

// staleOf is StaleFor on the CRLs that speak for the certificate r names.
func staleOf(r Ref, scoped []*CRL, now time.Time, grace time.Duration) *CRL {
	// the newest CRL of each CA, in the order the CAs first appear (a
	// handful: a slice, not a map)
	var small [4]*CRL
	newest := small[:0]
	for _, c := range scoped {
		k := c.caKey()
		i := slices.IndexFunc(newest, func(o *CRL) bool { return o.caKey() == k })
		if i < 0 {
			newest = append(newest, c)
			continue
		}
		// (between equal thisUpdates, the one that goes stale first; a
		// CRL dated in time before one dated ahead, Index.KeepFuture)
		if cur := newest[i]; c.Future != cur.Future && cur.Future || c.Future == cur.Future && (c.Header.ThisUpdate.After(cur.Header.ThisUpdate) ||
			c.Header.ThisUpdate.Equal(cur.Header.ThisUpdate) && c.NextUpdate().Before(cur.NextUpdate())) {
			newest[i] = c
		}
	}
	for _, c := range newest {
		// (a CA's newest CRL that a later one of its re-key speaks over:
		// that one's CA is judged on its own newest)
		if c.Stale(now, grace) && !rekeyReleases(c, r, scoped) {
			return c
		}
	}
	return nil
}

// Superseded reports whether c, a CRL of one scope (it has an
// issuingDistributionPoint), is older than a CRL of its CA without one,
// which speaks for every certificate c does: c is then left out of
// staleness warnings and the age metric, but its revocations are still
// searched (its holds lapse by newerSpeaksFor). A CRL of another distribution point does
// not supersede it: which certificates each speaks for is not known here.
//
// A CRL of c's CA re-keyed under its name by the same parent (rekeyPair)
// supersedes c too, whatever c's scope, when it is later, dated in time
// and speaks for every certificate of each kind c does (no distribution
// point named): the conditions on which it speaks for the old key's
// certificates and releases their holds (Covering, rekeyReleases), and
// on which StaleFor judges them by it. A CA that stopped publishing its
// old key's CRL is then not warned of as stale.
func (ix *Index) Superseded(c *CRL) bool {
	idp := idpValue(c.Header)
	k := c.caKey()
	for _, o := range ix.byRaw[c.issuerKey()] {
		if o == c || o.Future || !o.Header.ThisUpdate.After(c.Header.ThisUpdate) {
			continue
		}
		if o.caKey() == k {
			if idp != nil && idpValue(o.Header) == nil {
				return true
			}
			continue
		}
		if rekeyPair(c.CA, o.CA) && speaksForScope(o.Header, c.scopeOf()) {
			return true
		}
	}
	return false
}

// rekeyPair reports whether nu is old re-keyed under its name by the same
// parent, as a certificate of old's with an authorityKeyIdentifier knows
// it (ownKeyOrRekey, rekeyOf): old has a subjectKeyIdentifier (its
// certificates can name it) and an authorityKeyIdentifier, nu has that
// same authorityKeyIdentifier and the same issuer name, neither is
// self-issued, and their keys differ.
func rekeyPair(old, nu *x509.Certificate) bool {
	return len(old.SubjectKeyId) > 0 && len(old.AuthorityKeyId) > 0 && bytes.Equal(nu.AuthorityKeyId, old.AuthorityKeyId) &&
		!bytes.Equal(old.RawIssuer, old.RawSubject) && !bytes.Equal(nu.RawIssuer, nu.RawSubject) &&
		nu.Issuer.String() == old.Issuer.String() && SameName(nu.RawSubject, old.RawSubject) &&
		!bytes.Equal(nu.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo)
}

// speaksForScope reports whether a CRL speaks for every certificate of
// each kind a CRL of the scope lists (speaksForAll).
func speaksForScope(h *x509.RevocationList, scope string) bool {
	switch scope {
	case scopeUser:
		return speaksForAll(h, RoleImage)
	case scopeCA:
		return speaksForAll(h, RoleCA)
	}
	return speaksForAll(h, RoleImage) && speaksForAll(h, RoleCA)
}

// newerSpeaksFor reports whether a CRL of c's CA newer than c speaks for
// every certificate of the role: one without issuingDistributionPoint, or
// one whose issuingDistributionPoint names no distribution point and whose
// kind (user or CA certificates only) takes the role in. A hold c lists
// that such a CRL does not has been released.
func (ix *Index) newerSpeaksFor(c *CRL, role Role) bool {
	k := c.caKey()
	for _, o := range ix.byRaw[c.issuerKey()] {
		if o == c || o.Future || o.caKey() != k || !o.Header.ThisUpdate.After(c.Header.ThisUpdate) {
			continue
		}
		if speaksForAll(o.Header, role) {
			return true
		}
	}
	return false
}

// ownKeyOrRekey reports whether c, a CRL that covers the certificate r
// names, is signed by r's issuer's own key (the CRL signer's
// subjectKeyIdentifier is r's authorityKeyIdentifier) or by a re-key of it
// under its name by the same parent (rekeyOf): the CA that issued r, under
// one key or the other. Without key identifiers on both sides it is not
// known, and the answer is no.
func ownKeyOrRekey(c *CRL, r Ref) bool {
	return len(r.AKI) > 0 && (bytes.Equal(c.CA.SubjectKeyId, r.AKI) || rekeyOf(c.CA, r))
}

// rekeyReleases reports whether a certificateHold that c lists for the
// certificate r names is released by a CRL of the same CA under another
// key (a CA re-keyed under its name by the same parent, whose new key's CRL
// speaks for the old key's certificates, Covering): a CRL among cov, the
// CRLs covering r, signed by r's issuer's key or its re-key (as c is),
// with a later thisUpdate, that speaks for every certificate of r's role
// (speaksForAll) and so would list the hold if it stood (RFC 5280 5.3.1:
// a hold is released by its absence from a later complete CRL; delta CRLs,
// whose removeFromCRL would say so, are refused). The CRLs of c's own key
// are newerSpeaksFor's.
func rekeyReleases(c *CRL, r Ref, cov []*CRL) bool {
	if !ownKeyOrRekey(c, r) {
		return false
	}
	k := c.caKey()
	for _, o := range cov {
		if o == c || o.Future || o.caKey() == k || !ownKeyOrRekey(o, r) || !o.Header.ThisUpdate.After(c.Header.ThisUpdate) {
			continue
		}
		if speaksForAll(o.Header, r.Role) {
			return true
		}
	}
	return false
}

// speaksForAll reports whether a CRL speaks for every certificate of the
// role its CA issued: it has no issuingDistributionPoint, or one that names
// no distribution point and whose kind (user or CA certificates only) takes
// the role in.
func speaksForAll(h *x509.RevocationList, role Role) bool {
	idp := idpValue(h)
	return idp == nil || !idpNamesPoint(idp) && takesIn(scopeOf(h), role)
}

// Revocation is a revocation that makes an image invalid (or held).
type Revocation struct {
	// Cert is the revoked certificate when the check was given certificates.
	Cert *x509.Certificate
	// Ref is the revoked certificate's reference.
	Ref  Ref
	Role Role
	// Reason is the RFC 5280 CRLReason code (ReasonName gives its name).
	Reason    int
	RevokedAt time.Time
	CRLNumber *big.Int
	// Issuer is the CRL's issuer DN (RFC 4514).
	Issuer string
	// CRL is the CRL that revoked it.
	CRL *CRL
}

// Hold reports whether the revocation is a certificateHold.
func (r *Revocation) Hold() bool { return r.Reason == ReasonCertificateHold }

// Check applies RevocationApplies to every certificate named by refs for an
// image registered at registeredAt, and returns the revocation that applies,
// nil when none does. A revocation proper wins over a certificateHold;
// between equals the first in refs wins.
func (ix *Index) Check(refs []Ref, registeredAt time.Time, strict bool) *Revocation {
	return ix.check(refs, registeredAt, strict, ix.Covering)
}

// check is Check with the covering CRLs of a Ref from covering.
func (ix *Index) check(refs []Ref, registeredAt time.Time, strict bool, covering func(Ref) []*CRL) *Revocation {
	return checkIn([]*Index{ix}, refs, registeredAt, strict, covering)
}

// CheckChainAll is CheckChain over the CRLs of several indexes together
// (the verifier's trust store and the indexes of the CRLs it keeps for the
// CAs a signature brings): a revocation proper in any wins over a hold in
// any, and a hold one index lists is released by a CRL of another that
// would list it (a newer CRL of its CA for every certificate of the kind,
// or of its CA re-keyed under its name by the same parent: rekeyReleases),
// as it is when both are in one index, as in the CRL job. nil indexes are
// skipped.
func CheckChainAll(ixs []*Index, chain []*x509.Certificate, role Role, registeredAt time.Time, strict bool) *Revocation {
	var only *Index
	n := 0
	for _, ix := range ixs {
		if ix != nil {
			only, n = ix, n+1
		}
	}
	switch n {
	case 0:
		return nil
	case 1:
		return only.CheckChain(chain, role, registeredAt, strict)
	}
	ixs = slices.DeleteFunc(slices.Clone(ixs), func(ix *Index) bool { return ix == nil })
	covering := func(r Ref) []*CRL {
		var out []*CRL
		for _, ix := range ixs {
			out = append(out, ix.Covering(r)...)
		}
		return out
	}
	return checkIn(ixs, ChainRefs(chain, role), registeredAt, strict, covering)
}

// checkIn is Check over the CRLs of ixs, the covering CRLs of a Ref from
// covering (which takes them from ixs).
func checkIn(ixs []*Index, refs []Ref, registeredAt time.Time, strict bool, covering func(Ref) []*CRL) *Revocation {
	newer := func(c *CRL, role Role) bool {
		return slices.ContainsFunc(ixs, func(ix *Index) bool { return ix.newerSpeaksFor(c, role) })
	}
	var hold *Revocation
	for _, r := range refs {
		for _, c := range covering(r) {
			// every entry of the serial (a CRL may list one twice)
			for _, e := range c.FindAll(r.Serial) {
				if !RevocationApplies(r.Role, e.ReasonCode, e.RevocationTime, registeredAt, strict) {
					continue
				}
				if e.ReasonCode == ReasonCertificateHold && (newer(c, r.Role) || rekeyReleases(c, r, covering(r))) {
					continue // a hold the CA's newer CRL for such certificates would list
				}
				rev := &Revocation{Cert: r.Cert, Ref: r, Role: r.Role, Reason: e.ReasonCode, RevokedAt: e.RevocationTime,
					CRLNumber: c.Header.Number, Issuer: c.Header.Issuer.String(), CRL: c}
				if !rev.Hold() {
					return rev
				}
				if hold == nil {
					hold = rev
				}
			}
		}
	}
	return hold
}

// ChainRefs names the certificates of one chain: chain[0] in role, the
// following ones as RoleCA, but for the last when it is self-issued (the
// root, a trust anchor, which no CRL speaks for). A self-issued
// certificate within the chain (a key rollover's link certificate, the
// old key certifying the new under the CA's name) is named: RFC 5280
// 6.1.3 checks every certificate of a path but the anchor, and the
// catalogue record's imagetrust_chain lists it too.
func ChainRefs(chain []*x509.Certificate, role Role) []Ref {
	var out []Ref
	for i, c := range chain {
		rl := role
		if i > 0 {
			if i == len(chain)-1 && bytes.Equal(c.RawIssuer, c.RawSubject) {
				continue
			}
			rl = RoleCA
		}
		ref := Ref{Role: rl, Issuer: c.Issuer.String(), IssuerRaw: c.RawIssuer, Serial: c.SerialNumber, AKI: c.AuthorityKeyId, Cert: c,
			DistributionPoints: c.CRLDistributionPoints, PointsKnown: true}
		// (not when the issuer is the root, which the catalogue record
		// leaves out too: the CRL job and the verifier ask alike)
		if i+2 < len(chain) || i+2 == len(chain) && !bytes.Equal(chain[i+1].RawIssuer, chain[i+1].RawSubject) {
			ref.IssuerIssuer, ref.IssuerAKI = chain[i+1].Issuer.String(), chain[i+1].AuthorityKeyId
		}
		out = append(out, ref)
	}
	return out
}

// CheckChain is Check for one chain of certificates: chain[0] is the leaf
// playing role, chain[1:] its intermediates (RoleCA; a self-issued root
// at the end is skipped, see ChainRefs). It returns nil when no revocation applies.
func (ix *Index) CheckChain(chain []*x509.Certificate, role Role, registeredAt time.Time, strict bool) *Revocation {
	return ix.Check(ChainRefs(chain, role), registeredAt, strict)
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
