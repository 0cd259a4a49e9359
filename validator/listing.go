package validator

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
)

// MaxListingSize bounds a VO listing: 40 bytes a uuid, some 25,000 images.
const MaxListingSize = 1 << 20

// ListingVersion is the only version of the listing format.
const ListingVersion = 1

// Listing is a VO's signed list of the images it publishes
// (docs/formats.md, "VO listing"): what a source lists of the VO is
// checked against it, and an image of the VO not in it is the VO's
// withdrawal, not a source's.
type Listing struct {
	Version int      `json:"version"`
	VO      string   `json:"vo"`
	Serial  uint64   `json:"serial"`
	Issued  string   `json:"issued"`
	Expires string   `json:"expires"`
	Images  []string `json:"images"`

	// IssuedTime and ExpiresTime are Issued and Expires parsed.
	IssuedTime  time.Time `json:"-"`
	ExpiresTime time.Time `json:"-"`
	// Digest is the SHA-256 of the document's bytes (hex): two documents
	// of one serial are the same only if their digests are.
	Digest string `json:"-"`
	// Signer is the subject of the certificate that signed it (set by
	// Trust.VerifyListing).
	Signer string `json:"-"`

	// set holds Images, once ParseListing made it: Has is then a lookup,
	// not a scan (the sync asks it for every bundle and image of the VO)
	set map[string]bool
}

// Has reports whether the listing names the image uuid.
func (l *Listing) Has(uuid string) bool {
	if l.set != nil {
		return l.set[uuid]
	}
	for _, u := range l.Images {
		if u == uuid {
			return true
		}
	}
	return false
}

// Named reasons of a listing that is not accepted (ListingFailure).
const (
	ListingMissing           = "listing-missing"       // no listing of the VO in any source
	ListingInvalid           = "listing-invalid"       // the document does not parse
	ListingCMSInvalid        = "listing-cms-invalid"   // the signature does not parse
	ListingBadSignature      = "listing-bad-signature" // a signature does not verify
	ListingSignerUntrusted   = "listing-signer-untrusted"
	ListingSignerNotListed   = "listing-signer-not-authorised"
	ListingExtraSigner       = "listing-unexpected-signer" // not exactly one signer
	ListingWrongVO           = "listing-wrong-vo"
	ListingUnknownVO         = "listing-unknown-vo"
	ListingNotYetValid       = "listing-not-yet-valid" // issued in the future
	ListingExpired           = "listing-expired"
	ListingRevoked           = "listing-signer-revoked"
	ListingRevocationUnknown = "listing-revocation-unknown"
	ListingRolledBack        = "listing-rolled-back"   // serial below the highest accepted
	ListingSerialReused      = "listing-serial-reused" // same serial, other contents
)

// ListingReasons are all the Listing* reasons, for metrics.
var ListingReasons = []string{
	ListingMissing, ListingInvalid, ListingCMSInvalid, ListingBadSignature, ListingSignerUntrusted,
	ListingSignerNotListed, ListingExtraSigner, ListingWrongVO, ListingUnknownVO, ListingNotYetValid,
	ListingExpired, ListingRevoked, ListingRevocationUnknown, ListingRolledBack, ListingSerialReused,
}

// listingKeys are the listing's top-level keys, byte for byte (see
// descriptorKeys for why).
var listingKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Listing]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}()

// MaxListingLife is the longest a listing may last, from issued to
// expires: how long at most a source that serves a VO's last listing, and
// withholds the newer ones, can hold a site on it (a freeze).
const MaxListingLife = 90 * 24 * time.Hour

// ParseListing decodes and checks a VO listing: strict JSON (valid UTF-8,
// no duplicate key, every key exactly one of the format's and all of them
// present, no trailing data), at most MaxListingSize bytes, version 1, a
// VO name, a positive serial, RFC 3339 times with expires after issued
// and at most MaxListingLife after it, and canonical image uuids, each once. Its errors are ListingFailures of
// reason ListingInvalid.
func ParseListing(b []byte) (*Listing, error) {
	l, err := parseListing(b)
	if err != nil {
		return nil, NewListingFailure(ListingInvalid, err)
	}
	return l, nil
}

func parseListing(b []byte) (*Listing, error) {
	if len(b) == 0 {
		return nil, errors.New("listing is empty")
	}
	if len(b) > MaxListingSize {
		return nil, fmt.Errorf("listing is %d bytes, more than the %d allowed", len(b), MaxListingSize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("listing is not valid UTF-8")
	}
	if _, err := checkKeys(b, "listing", listingKeys); err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&raw); err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	for k := range raw {
		if !listingKeys[k] {
			return nil, fmt.Errorf("listing: unknown field %s", quoteShort(k))
		}
	}
	for k := range listingKeys {
		if _, ok := raw[k]; !ok {
			return nil, fmt.Errorf("listing field %s is missing", k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l Listing
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("listing: trailing data after the JSON object")
	}
	if l.Version != ListingVersion {
		return nil, fmt.Errorf("listing field version %d: only version %d is known", l.Version, ListingVersion)
	}
	if !nameRE.MatchString(l.VO) {
		return nil, fmt.Errorf("listing field vo %s: must match %s", quoteShort(l.VO), nameRE)
	}
	if l.Serial == 0 {
		return nil, errors.New("listing field serial: must be positive")
	}
	var err error
	if l.IssuedTime, err = time.Parse(time.RFC3339, l.Issued); err != nil {
		return nil, fmt.Errorf("listing field issued %s: not RFC 3339", quoteShort(l.Issued))
	}
	if l.ExpiresTime, err = time.Parse(time.RFC3339, l.Expires); err != nil {
		return nil, fmt.Errorf("listing field expires %s: not RFC 3339", quoteShort(l.Expires))
	}
	if !l.ExpiresTime.After(l.IssuedTime) {
		return nil, fmt.Errorf("listing field expires %s: not after issued %s", l.Expires, l.Issued)
	}
	if l.ExpiresTime.Sub(l.IssuedTime) > MaxListingLife {
		return nil, fmt.Errorf("listing field expires %s: more than %d days after issued %s (a source could hold sites on it until then)",
			l.Expires, MaxListingLife/(24*time.Hour), l.Issued)
	}
	if l.Images == nil {
		return nil, errors.New("listing field images: must be an array (empty: the VO publishes no image)")
	}
	seen := make(map[string]bool, len(l.Images))
	for _, u := range l.Images {
		if !canonicalUUID.MatchString(u) {
			return nil, fmt.Errorf("listing field images: %s is not an RFC 4122 UUID in canonical lower-case hyphenated form", quoteShort(u))
		}
		if seen[u] {
			return nil, fmt.Errorf("listing field images: %s is listed twice", u)
		}
		seen[u] = true
	}
	l.set = seen
	sum := sha256.Sum256(b)
	l.Digest = fmt.Sprintf("%x", sum)
	return &l, nil
}

// ListingFailure is the error of a listing that is not accepted, with its
// named reason (one of ListingReasons).
type ListingFailure struct {
	Reason string
	err    error
}

// NewListingFailure makes a failure of reason.
func NewListingFailure(reason string, err error) *ListingFailure {
	return &ListingFailure{Reason: reason, err: err}
}

func (e *ListingFailure) Error() string {
	if e.err == nil {
		return "listing refused: " + e.Reason
	}
	return "listing refused (" + e.Reason + "): " + e.err.Error()
}

func (e *ListingFailure) Unwrap() error { return e.err }

// ListingReason returns the named reason of a listing error (ListingInvalid
// when err is no ListingFailure).
func ListingReason(err error) string {
	var lf *ListingFailure
	if errors.As(err, &lf) {
		return lf.Reason
	}
	return ListingInvalid
}

// VerifyListing checks a VO listing and its detached CMS signature for VO
// vo at now: the document parses (ParseListing) and names vo; the
// signature holds exactly one signer, whose signature verifies and whose
// certificate chains to a people CA now, within the CA's namespace, as an
// end-entity signing certificate (the checks of a creator or approver,
// made at now, not at a registration), is one of the VO's listing signers
// (VOPolicy.ListingSigners, else its approvers) and is not revoked (the
// approver's revocation rule, with now as the time of signing: any
// revocation up to now applies); issued is not later than now plus the
// CRL clock skew; now is before expires. Whether the serial goes back is
// the caller's question (it keeps the baseline). Every error is a
// *ListingFailure.
func (t *Trust) VerifyListing(doc, sig []byte, vo string, now time.Time) (*Listing, error) {
	l, err := ParseListing(doc)
	if err != nil {
		return nil, err
	}
	fail := func(reason, format string, a ...any) (*Listing, error) {
		return nil, NewListingFailure(reason, fmt.Errorf(format, a...))
	}
	if l.VO != vo {
		return fail(ListingWrongVO, "the listing is of VO %s, read as VO %s's", quoteShort(l.VO), vo)
	}
	policy := t.vos[vo]
	if policy == nil {
		return fail(ListingUnknownVO, "VO %s is not configured at this site", quoteShort(vo))
	}
	sd, err := cms.Parse(sig)
	if err != nil {
		return nil, NewListingFailure(ListingCMSInvalid, err)
	}
	if len(sd.Signers) != 1 {
		return fail(ListingExtraSigner, "%d signers; a listing has exactly one", len(sd.Signers))
	}
	s := &sd.Signers[0]
	c := s.Certificate
	if err := s.Verify(doc); err != nil {
		return fail(ListingBadSignature, "signer %q: %v", SubjectName(c), err)
	}
	inter := &interPools{t: t, embedded: sd.Certificates}
	chains, err := t.verifyPeople(c, inter, now)
	if err != nil {
		return fail(ListingSignerUntrusted, "listing signer %q: %v", SubjectName(c), err)
	}
	if err := t.checkNamespaces(chains[0]); err != nil {
		return fail(ListingSignerUntrusted, "listing signer: %v", err)
	}
	const signing = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	if c.IsCA || (c.KeyUsage != 0 && c.KeyUsage&signing == 0) {
		return fail(ListingSignerUntrusted, "listing signer %q is not an end-entity signing certificate (CA:%v, keyUsage %#x)", SubjectName(c), c.IsCA, c.KeyUsage)
	}
	subj, err := DNFromRaw(c.RawSubject)
	if err != nil {
		return fail(ListingSignerUntrusted, "listing signer: %v", err)
	}
	signers := policy.ListingSigners
	if signers == nil {
		signers = policy.Approvers
	}
	listed := false
	for _, dn := range signers {
		listed = listed || dn.Equal(subj)
	}
	if !listed {
		return fail(ListingSignerNotListed, "%s is not among the listing signers of VO %s", quoteShort(subj.OneLine()), vo)
	}
	rev, err := t.checkChain(chains[0], crl.RoleApprover, now)
	if err != nil {
		return nil, NewListingFailure(ListingRevocationUnknown, err)
	}
	if rev != nil {
		return fail(ListingRevoked, "%s", rev.String())
	}
	if l.IssuedTime.After(now.Add(t.clockSkew)) {
		return fail(ListingNotYetValid, "listing issued %s, later than now (%s)", l.Issued, now.UTC().Format(time.RFC3339))
	}
	if !now.Before(l.ExpiresTime) {
		return fail(ListingExpired, "listing serial %d expired on %s", l.Serial, l.Expires)
	}
	l.Signer = subj.OneLine()
	return l, nil
}

// ListingBaseline is what a host last accepted of a VO's listings: the
// highest serial and the digest of its document.
type ListingBaseline struct {
	Serial uint64 `json:"serial"`
	Digest string `json:"sha256"`
}

// CheckListingSerial refuses a listing that goes back: a serial lower than
// the baseline's (ListingRolledBack), or the baseline's serial with other
// contents (ListingSerialReused). A zero baseline takes every listing.
func CheckListingSerial(l *Listing, base ListingBaseline) error {
	switch {
	case base.Serial == 0:
		return nil
	case l.Serial < base.Serial:
		return NewListingFailure(ListingRolledBack, fmt.Errorf("listing serial %d is lower than %d, the highest this host accepted", l.Serial, base.Serial))
	case l.Serial == base.Serial && l.Digest != base.Digest:
		return NewListingFailure(ListingSerialReused, fmt.Errorf("listing serial %d was accepted before with other contents", l.Serial))
	}
	return nil
}
