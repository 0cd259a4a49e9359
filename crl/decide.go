package crl

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"math/big"
	"strings"
	"time"
)

// Image is a catalogue entry as the job sees it.
type Image struct {
	ID, Status string
	Properties map[string]string
}

// Glance image statuses the job acts on.
const (
	StatusActive      = "active"
	StatusDeactivated = "deactivated"
)

// Policy is how the job turns CRLs into image states.
type Policy struct {
	// Strict applies every revocation of a creator or approver regardless of dates.
	Strict bool
	// RefuseStale makes images depending on a stale CRL "unknown" (else: warn only).
	RefuseStale bool
	// RequireCRL makes images "unknown" when a certificate of their chains has no CRL.
	RequireCRL bool
	// Grace is added to nextUpdate before a CRL is stale.
	Grace time.Duration
}

// Change is what the job does to one image.
type Change struct {
	ImageID string `json:"image_id"`
	From    string `json:"from"`
	To      string `json:"to"`
	Why     string `json:"why"`
	// Set and Remove are the property writes; Deactivate/Reactivate the status actions.
	Set        map[string]string `json:"set,omitempty"`
	Remove     []string          `json:"remove,omitempty"`
	Deactivate bool              `json:"deactivate,omitempty"`
	Reactivate bool              `json:"reactivate,omitempty"`
}

// Writes is the number of catalogue calls the change needs.
func (c *Change) Writes() int {
	n := 0
	if len(c.Set) > 0 || len(c.Remove) > 0 {
		n++
	}
	if c.Deactivate {
		n++
	}
	if c.Reactivate {
		n++
	}
	return n
}

// desired is the state an image should have and why.
type desired struct {
	state string
	rev   *Revocation
	why   string
}

// Judge computes the state of one image record from the index at now.
// A revocation proves itself even from a stale CRL (from any CRL of the
// CA, whichever distribution point it names); under RefuseStale a
// certificate whose issuer's newest CRL that speaks for it (of its kind
// and, for a CA partitioning its CRLs by distribution point, of a point
// the certificate names: takesPoints) is stale (StaleFor), and under
// RequireCRL one for which no CRL of its issuer speaks (CoveringScope),
// makes the rest unknown. The certificates' distribution points are read
// from the certificates the record's imagetrust_signature embeds
// (pointsOf). An image on hold stays on hold
// (rev nil: its recorded details kept) until the index holds a newer CRL of
// the CA that imposed it (holdKept): only a newer CRL lifts a hold.
func Judge(ix *Index, img Image, p Policy, now time.Time) (state string, rev *Revocation, why string) {
	d := newCoverMemo(ix, now, p.Grace).judge(img, p)
	return d.state, d.rev, d.why
}

// coverMemo answers Covering, CoveringScope and StaleFor of one index at
// one time and grace, each question once: the records of a catalogue name
// the same few issuers (and keys) over and over. The index may not change
// while a coverMemo is in use. The answers are shared: read them only.
type coverMemo struct {
	ix    *Index
	now   time.Time
	grace time.Duration
	// by issuer (raw DER when the Ref has it, else the name), then AKI
	// (with the issuer's issuer and key when known)
	byRaw, byName map[string]map[string]*coverAnswer
	// points remembers the records' certificates' distribution points
	// across the job's runs (nil: within this memo only); partitioned is
	// ix.namesPoints(), once (0 not yet asked, 1 yes, 2 no)
	points      *pointsMemo
	partitioned int8
	// known is what the CA certificates the job knows (configured,
	// of IGTF directory sources, embedded and chained) say of their
	// distribution points (knownPoints; nil: none)
	known sigPoints
}

// recordPoints fills in refs' distribution points from the certificates
// of the record's imagetrust_signature (pointsOf), and then from the CA
// certificates the job knows (knownPoints, m.known), when a CRL of the
// index names a distribution point (else they change nothing: takesPoints).
// It returns pointsOf's conflict ("" when none).
func (m *coverMemo) recordPoints(refs []Ref, props map[string]string) string {
	if m.partitioned == 0 {
		m.partitioned = 2
		if m.ix.namesPoints() {
			m.partitioned = 1
		}
	}
	if m.partitioned != 1 {
		return ""
	}
	conflict := ""
	if s := props[PropSignature]; s != "" && len(s) <= maxSignatureB64 {
		if m.points == nil {
			m.points = &pointsMemo{}
			m.points.begin()
		}
		conflict = pointsOf(refs, m.points.read(s))
	}
	knownPoints(refs, m.known)
	return conflict
}

type coverAnswer struct {
	all []*CRL
	// by role kind (takesIn tells only RoleCA and the others apart) and
	// distribution points (takesPoints): scopedKey
	scoped map[string]*scopedAnswer
}

// scopedKey tells apart the Refs of one issuer and key whose CRLs in
// scope may differ: by role kind, and by the distribution points when
// known (their order does not matter to takesPoints, but a record's
// certificates of one issuer name them alike).
func scopedKey(r Ref) string {
	k := "e"
	if r.Role == RoleCA {
		k = "c"
	}
	if !r.PointsKnown {
		// (constants: no allocation for the common case)
		if r.Role == RoleCA {
			return "c?"
		}
		return "e?"
	}
	for _, p := range r.DistributionPoints {
		k += "\x00" + p
	}
	return k
}

type scopedAnswer struct {
	done, staleDone bool
	crls            []*CRL
	stale           *CRL
}

func newCoverMemo(ix *Index, now time.Time, grace time.Duration) *coverMemo {
	return &coverMemo{ix: ix, now: now, grace: grace,
		byRaw: map[string]map[string]*coverAnswer{}, byName: map[string]map[string]*coverAnswer{}}
}

func (m *coverMemo) answer(r Ref) *coverAnswer {
	byIssuer, issuer := m.byName, nameStringKey(r.Issuer)
	if r.IssuerRaw != nil {
		byIssuer, issuer = m.byRaw, NameKey(r.IssuerRaw)
	}
	byAKI := byIssuer[issuer]
	if byAKI == nil {
		byAKI = map[string]*coverAnswer{}
		byIssuer[issuer] = byAKI
	}
	// (and by the issuer's issuer and key, which Covering also reads: a
	// cross-certified issuer has two)
	k := string(r.AKI)
	if len(r.IssuerAKI) > 0 {
		k += "\x00" + r.IssuerIssuer + "\x00" + string(r.IssuerAKI)
	}
	a := byAKI[k]
	if a == nil {
		a = &coverAnswer{all: m.ix.Covering(r)}
		byAKI[k] = a
	}
	return a
}

func (m *coverMemo) scoped(r Ref) *scopedAnswer {
	a := m.answer(r)
	k := scopedKey(r)
	s := a.scoped[k]
	if s == nil {
		if a.scoped == nil {
			a.scoped = map[string]*scopedAnswer{}
		}
		s = &scopedAnswer{}
		a.scoped[k] = s
	}
	if !s.done {
		s.crls, s.done = inScope(a.all, r), true
	}
	return s
}

// covering is ix.Covering(r).
func (m *coverMemo) covering(r Ref) []*CRL { return m.answer(r).all }

// coveringScope is ix.CoveringScope(r).
func (m *coverMemo) coveringScope(r Ref) []*CRL { return m.scoped(r).crls }

// coveringKind is ix.CoveringScope(r) whatever distribution points r's
// certificate names: the CRLs of its kind. A hold is lifted by them
// (holdKept): a CRL of the CA lists a hold, as a revocation, whichever
// point it names, and its CRL of the same scope numbered above it, no
// longer listing it, lifts it, though it does not speak for the
// certificate's staleness.
func (m *coverMemo) coveringKind(r Ref) []*CRL {
	r.DistributionPoints, r.PointsKnown = nil, false
	return m.scoped(r).crls
}

// staleFor is ix.StaleFor(r, now, grace).
func (m *coverMemo) staleFor(r Ref) *CRL {
	s := m.scoped(r)
	if !s.staleDone {
		crls := s.crls
		if len(crls) == 0 && r.PointsKnown {
			crls = m.coveringKind(r) // (no CRL of its point: StaleFor)
		}
		s.stale, s.staleDone = staleOf(r, crls, m.now, m.grace), true
	}
	return s.stale
}

// judge is Judge at m's index, time and grace (p.Grace).
func (m *coverMemo) judge(img Image, p Policy) desired {
	ix := m.ix
	refs, reg, err := RecordRefs(img.Properties)
	if err != nil {
		// a registration time that does not read (edited or unset by
		// hand) leaves the revocations and holds that apply whatever the
		// dates (the image certificate's, a compromise, a hold: judged at
		// the zero time, RevocationApplies) to prove themselves: the
		// image is revoked or held, not only unknown until the sync
		// restores the record
		if refs, ok := refsWithoutTime(img.Properties); ok {
			if rev := ix.check(refs, time.Time{}, p.Strict, m.covering); rev != nil {
				state := StateRevoked
				if rev.Hold() {
					state = StateHold
				}
				return desired{state: state, rev: rev, why: revWhy(rev)}
			}
		}
		return desired{state: StateUnknown, why: err.Error()}
	}
	// which distribution points each certificate names: a CRL of another
	// point does not speak for it (takesPoints)
	conflict := m.recordPoints(refs, img.Properties)
	rev := ix.check(refs, reg, p.Strict, m.covering)
	if rev != nil && !rev.Hold() {
		return desired{state: StateRevoked, rev: rev, why: revWhy(rev)}
	}
	if rev != nil {
		return desired{state: StateHold, rev: rev, why: revWhy(rev)}
	}
	if img.Properties[PropGlobalValidity] == StateHold {
		if why, kept := holdKept(m, refs, img.Properties); kept {
			return desired{state: StateHold, why: why}
		}
	}
	if conflict != "" {
		// (after the revocations and holds: they prove themselves)
		return desired{state: StateUnknown, why: conflict}
	}
	for _, r := range refs {
		cov := m.coveringScope(r)
		if len(cov) == 0 && p.RequireCRL {
			return desired{state: StateUnknown, why: "no CRL of " + r.Issuer + " that lists certificates like it (of its kind and, for a CRL naming distribution points, one the certificate names)"}
		}
		if !p.RefuseStale {
			continue
		}
		if c := m.staleFor(r); c != nil {
			return desired{state: StateUnknown, why: "stale CRL of " + r.Issuer + " (" + nextUpdateText(c) + ")"}
		}
	}
	return desired{state: StateValid, why: "no revocation applies"}
}

// refsWithoutTime is RecordRefs of a record whose registration time does
// not read: its references, with none (the zero time).
func refsWithoutTime(props map[string]string) ([]Ref, bool) {
	q := maps.Clone(props)
	q[PropNotBefore] = time.Time{}.Format(time.RFC3339)
	refs, _, err := RecordRefs(q)
	return refs, err == nil
}

// holdKept reports whether the hold recorded in props stands (and why):
// it is lifted only by a CRL of the CA whose CRL imposed it, covering the
// held certificate, that is either of the same scope and numbered above it
// (CRL numbers count per CA and scope, RFC 5280 5.2.3), or newer and
// speaking for every certificate of its kind (no distribution point named).
// The CA re-keyed under its name by the same parent is the same CA here
// (its newer CRL for every certificate of the kind lifts the hold, as
// Covering lets it revoke; rekeyReleases in the verifier's lookup). A CRL
// of another CA, or of another distribution point of the same CA,
// says nothing about the hold, and a fetch that failed with nothing newer
// cached lifts nothing. Holds recorded before the scope was (no
// PropRevCRLScope) need a CRL numbered above the recorded one for every
// certificate of the held role, or for a distribution point the held
// certificate names (its points read from the record's signature or
// the CA certificates the job knows, recordPoints): not
// one of another point, whose numbers count apart (RFC 5280 5.2.3).
func holdKept(m *coverMemo, refs []Ref, props map[string]string) (string, bool) {
	role := props[PropRevokedRole]
	imposed, numOK := new(big.Int).SetString(props[PropRevCRLNumber], 10)
	scope := props[PropRevCRLScope]
	if scope == "" {
		for _, r := range refs {
			if string(r.Role) != role {
				continue
			}
			// (numbers count per scope, and the record does not say
			// which scope imposed the hold: only a CRL that would list it
			// whichever did, one for every certificate of the role, or
			// one of a distribution point the certificate names, says)
			newer := false
			for _, c := range m.coveringKind(r) {
				if !speaksForAll(c.Header, r.Role) && !(r.PointsKnown && takesPoints(c, r)) {
					continue
				}
				newer = newer || !numOK || (c.Header.Number != nil && c.Header.Number.Cmp(imposed) > 0)
			}
			if !newer {
				return "hold kept: no CRL of " + r.Issuer + " newer than the one that imposed it (number " + props[PropRevCRLNumber] + ") this run", true
			}
		}
		return "", false
	}
	serial, serialOK := new(big.Int).SetString(props[PropRevSerial], 16)
	since, timeErr := time.Parse(time.RFC3339, props[PropRevCRLThisUpdate])
	caID, _, _ := strings.Cut(scope, "/")
	// several certificates of the role may have this serial (intermediates
	// of different CAs): the held one is the one the imposing CA's CRLs cover
	inRecord := false
	for _, r := range refs {
		if string(r.Role) != role || !serialOK || r.Serial == nil || r.Serial.Cmp(serial) != 0 {
			continue
		}
		inRecord = true
		for _, c := range m.coveringKind(r) {
			id := CRLScopeID(c)
			if !strings.HasPrefix(id, caID+"/") {
				// another CA's CRL, or this name with another key: that
				// of the held certificate's CA re-keyed by the same parent
				// lifts it as rekeyReleases does (newer, for every
				// certificate of the role); the CRL that imposed the hold
				// covered the certificate, so was of that CA too
				if ownKeyOrRekey(c, r) && speaksForAll(c.Header, r.Role) && timeErr == nil && c.Header.ThisUpdate.After(since) {
					return "", false
				}
				continue
			}
			if id == scope && numOK && c.Header.Number != nil && c.Header.Number.Cmp(imposed) > 0 {
				return "", false
			}
			if speaksForAll(c.Header, r.Role) && timeErr == nil && c.Header.ThisUpdate.After(since) {
				return "", false
			}
		}
	}
	if !inRecord {
		return "hold kept: the held " + role + " certificate " + props[PropRevSerial] + " is not in the image's record", true
	}
	return "hold kept: no CRL of the CA that imposed it newer than its number " + props[PropRevCRLNumber] + " (scope " + scope + ") this run", true
}

// CRLScopeID names c's CA (its name and key) and c's scope (its
// issuingDistributionPoint) as "CA/SCOPE", two hex digests: CRLs with the
// same id count their numbers together.
func CRLScopeID(c *CRL) string { return scopeID(c.caKey(), idpValue(c.Header)) }

// scopeID is CRLScopeID from a caKey and an issuingDistributionPoint value.
func scopeID(caK string, idp []byte) string {
	ca := sha256.Sum256([]byte(caK))
	sc := sha256.Sum256(idp)
	return hex.EncodeToString(ca[:12]) + "/" + hex.EncodeToString(sc[:12])
}

func revWhy(r *Revocation) string {
	return string(r.Role) + " certificate " + r.Ref.Serial.Text(16) + " of " + r.Issuer + ": " + ReasonName(r.Reason) +
		" at " + r.RevokedAt.UTC().Format(time.RFC3339) + " (CRL " + r.CRLNumber.String() + ")"
}

// Plan returns the change that brings img to the computed state, or nil when
// nothing differs. The rules:
//
//   - a "revoked" image stays revoked: nothing the job computes changes it;
//   - revoked and hold images that are active are deactivated; a hold
//     deactivation is recorded with imagetrust_deactivated_by=crl-hold;
//   - an image is reactivated only when it becomes valid, is deactivated,
//     carries imagetrust_deactivated_by=crl-hold and has no
//     imagetrust_local_validity (the operator's flag: never written, and its
//     presence means the operator is in charge of the image);
//   - "unknown" never deactivates (the proxy refuses unknown images) and
//     never reactivates;
//   - only properties whose value differs are written.
func Plan(img Image, state string, rev *Revocation, why string) *Change {
	props := img.Properties
	cur := props[PropGlobalValidity]
	if cur == StateRevoked {
		if img.Status == StatusActive {
			return &Change{ImageID: img.ID, From: cur, To: cur, Why: "revoked image found active", Deactivate: true}
		}
		return nil
	}
	want := map[string]string{PropGlobalValidity: state}
	var drop []string
	details := []string{PropRevReason, PropRevDate, PropRevCRLNumber, PropRevokedRole, PropRevSerial, PropRevCRLScope, PropRevCRLThisUpdate}
	switch state {
	case StateHold:
		if rev == nil {
			break // a hold kept as recorded (judge)
		}
		fallthrough
	case StateRevoked:
		want[PropRevReason] = ReasonName(rev.Reason)
		want[PropRevDate] = rev.RevokedAt.UTC().Format(time.RFC3339)
		want[PropRevCRLNumber] = rev.CRLNumber.String()
		want[PropRevokedRole] = string(rev.Role)
		want[PropRevSerial] = rev.Ref.Serial.Text(16)
		if rev.CRL != nil {
			want[PropRevCRLScope] = CRLScopeID(rev.CRL)
			want[PropRevCRLThisUpdate] = rev.CRL.Header.ThisUpdate.UTC().Format(time.RFC3339)
		}
	default:
		drop = append(drop, details...)
	}
	c := &Change{ImageID: img.ID, From: cur, To: state, Why: why}
	switch state {
	case StateRevoked:
		drop = append(drop, PropDeactivatedBy) // never to be reactivated
		c.Deactivate = img.Status == StatusActive
	case StateHold:
		if img.Status == StatusActive {
			c.Deactivate = true
			want[PropDeactivatedBy] = DeactivatedByHold
		}
	case StateValid:
		if props[PropDeactivatedBy] == DeactivatedByHold && props[PropLocalValidity] == "" {
			drop = append(drop, PropDeactivatedBy)
			c.Reactivate = img.Status == StatusDeactivated
		}
	}
	for k, v := range want {
		if old, ok := props[k]; !ok || old != v {
			if c.Set == nil {
				c.Set = map[string]string{}
			}
			c.Set[k] = v
		}
	}
	for _, k := range drop {
		if _, ok := props[k]; ok {
			c.Remove = append(c.Remove, k)
		}
	}
	if c.Writes() == 0 {
		return nil
	}
	return c
}

// nextUpdateText says when c went stale (before grace), for messages: its
// nextUpdate, or for a CRL without one, its thisUpdate plus the maximum age.
func nextUpdateText(c *CRL) string {
	if c.Header.NextUpdate.IsZero() {
		return "no nextUpdate; thisUpdate " + c.Header.ThisUpdate.UTC().Format(time.RFC3339) + " plus the maximum age " + c.NextUpdate().Sub(c.Header.ThisUpdate).String()
	}
	return "nextUpdate " + c.Header.NextUpdate.UTC().Format(time.RFC3339)
}
