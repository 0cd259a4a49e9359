package validator

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// Trust holds the trust anchors, the CRLs and the VO policies that bundles
// are judged against. It is immutable once built and safe for concurrent use;
// reloading builds a new Trust.
type Trust struct {
	// People are the CAs of creators and approvers.
	peopleRoots, peopleInter *x509.CertPool
	// Registrar CAs issue image certificates.
	regRoots, regInter *x509.CertPool
	// the intermediates again, as slices (a CertPool can't be listed)
	peopleInterCerts, regInterCerts []*x509.Certificate
	// peopleSubjects / regSubjects are the raw subjects of every anchor, to
	// tell which side of the trust store a chain ends in.
	anchors []*x509.Certificate
	// anchorDNs are the anchors' subjects, decoded (nil: not decodable)
	anchorDNs []DN
	// people and registrar are the configured CAs of each side, as given
	people, registrar []*x509.Certificate
	crls              *crl.Index
	// chainCRLs are CRLs whose issuer is no configured CA: each is used for
	// the chains that bring its issuer as a verified intermediate
	// (chainIndex, cached in chainIx), as accepted at crlNow.
	chainCRLs []*x509.RevocationList
	chainIx   sync.Map // string(issuer.Raw) -> *crl.Index (nil: none)
	crlNow    time.Time
	clockSkew time.Duration
	maxAge    time.Duration
	vos       map[string]*VOPolicy
	strict    bool
	// requireCRL refuses a chain whose issuing CA has no CRL.
	requireCRL bool
	// requireBound refuses a descriptor without uuid_seed (uuid-not-bound).
	requireBound bool
	// ns are the IGTF name constraints of the trust store (nil: none).
	ns *Namespaces
	// peopleCAs are the keys (caKey) of every people CA: no image
	// certificate's chain may pass through a CA holding one.
	peopleCAs map[string]bool

	records recordCache // recordKey -> verdict of the stored record
}

// VOPolicy is one VO's authorised creators and approvers.
type VOPolicy struct {
	Name      string
	Creators  []DN
	Approvers []DN
	// ListingSigners may sign the VO's listings (VerifyListing); nil:
	// its Approvers.
	ListingSigners []DN
}

// TrustOptions are the inputs of NewTrust, already read from disk.
type TrustOptions struct {
	// People and Registrar are the CA certificates (roots and intermediates) of
	// each side. A certificate may not be on both sides.
	People, Registrar []*x509.Certificate
	// CRLs are DER or PEM CRLs of any of the CAs; each is used only if its
	// signature verifies with its issuer's key. A CRL whose issuer is none
	// of these CAs, or that the configured CA of its issuer's name did not
	// sign (the CA re-keyed since), is kept for the chains that bring its
	// issuer as a verified intermediate (embedded in a signature), and used
	// for them when that intermediate's key signed it.
	CRLs [][]byte
	VOs  map[string]*VOPolicy
	// Strict: a signer revoked for any reason invalidates every image it signed.
	Strict     bool
	RequireCRL bool
	// RequireBoundUUIDs refuses a descriptor without uuid_seed
	// (ReasonUUIDNotBound), whatever else it passes: the sync, `imagetrust
	// verify --config` and the boot gate (re-verifying the catalogue
	// record, which holds the signed descriptor) all judge so. A descriptor
	// with a seed its uuid does not follow from is refused either way.
	RequireBoundUUIDs bool
	// Namespaces constrain the subjects each CA may issue (nil: none).
	Namespaces *Namespaces
	// Now is when the CRLs are accepted: one whose thisUpdate is after
	// Now+ClockSkew is used for its revocations and holds, but lifts no
	// hold of another CRL (crl.Index.KeepFuture; a warning). Zero skips
	// that check (LoadTrust sets it: the sync, the proxy and `imagetrust
	// verify` apply it).
	Now       time.Time
	ClockSkew time.Duration
	// MaxAge is how long after its thisUpdate a CRL without nextUpdate is
	// fresh (StaleCRLs; zero: crl.DefaultMaxAge).
	MaxAge time.Duration
}

// NewTrust builds a Trust. It refuses a configuration in which a CA (a
// name and key, whichever certificate carries them) is both a people CA and
// a Registrar CA, since an image certificate must never chain to a people CA. CRLs that don't verify are reported in the
// returned warnings, and not used.
func NewTrust(o TrustOptions) (*Trust, []string, error) {
	t := &Trust{
		peopleRoots: x509.NewCertPool(), peopleInter: x509.NewCertPool(),
		regRoots: x509.NewCertPool(), regInter: x509.NewCertPool(),
		vos: o.VOs, strict: o.Strict, requireCRL: o.RequireCRL, requireBound: o.RequireBoundUUIDs, ns: o.Namespaces,
		people: append([]*x509.Certificate(nil), o.People...), registrar: append([]*x509.Certificate(nil), o.Registrar...),
	}
	if t.vos == nil {
		t.vos = map[string]*VOPolicy{}
	}
	people := map[string]bool{}
	for _, c := range o.People {
		people[caKey(c)] = true
		if !c.IsCA {
			return nil, nil, fmt.Errorf("people CA %q is not a CA certificate", SubjectName(c))
		}
		if isSelfSigned(c) {
			t.peopleRoots.AddCert(c)
		} else {
			t.peopleInter.AddCert(c)
			t.peopleInterCerts = append(t.peopleInterCerts, c)
		}
		t.anchors = append(t.anchors, c)
	}
	for _, c := range o.Registrar {
		if people[caKey(c)] {
			return nil, nil, fmt.Errorf("CA %q has the key of a people CA (under this or another name), so it is both a people CA and a Registrar CA: an image certificate must never chain to a people CA", SubjectName(c))
		}
		if !c.IsCA {
			return nil, nil, fmt.Errorf("registrar CA %q is not a CA certificate", SubjectName(c))
		}
		if isSelfSigned(c) {
			t.regRoots.AddCert(c)
		} else {
			t.regInter.AddCert(c)
			t.regInterCerts = append(t.regInterCerts, c)
		}
		t.anchors = append(t.anchors, c)
	}
	for _, a := range t.anchors {
		dn, _ := DNFromRaw(a.RawSubject)
		t.anchorDNs = append(t.anchorDNs, dn)
	}
	var warnings []string
	t.peopleCAs = people
	// a CRL dated beyond now plus the skew is used for what it lists
	// (crl.Index.KeepFuture): the trust store keeps no previous CRL of its
	// CA to fall back on, as the CRL job does, so refusing it would lose
	// every revocation it lists until a reload past its date
	t.crls = &crl.Index{ClockSkew: o.ClockSkew, MaxAge: o.MaxAge, KeepFuture: true}
	t.crlNow, t.clockSkew, t.maxAge = o.Now, o.ClockSkew, o.MaxAge
	for i, b := range o.CRLs {
		err := addCRL(t.crls, b, t.anchors, o.Now)
		if err == nil {
			continue
		}
		// Kept for the chains whose CA of that name signed it: an
		// intermediate no configured CA is, or one re-keyed since the
		// configured certificate of its name (chainIndex applies addCRL's
		// checks with the chain's own CA). A CRL refused for anything but
		// who signed it is not kept.
		var ce *crl.Error
		otherKey := errors.As(err, &ce) && (ce.Reason == crl.ReasonSignature || ce.Reason == crl.ReasonWrongIssuer)
		rl, perr := crl.Parse(b)
		switch {
		case perr == nil && errors.Is(err, errNoAnchor):
			t.chainCRLs = append(t.chainCRLs, rl)
		case perr == nil && otherKey:
			t.chainCRLs = append(t.chainCRLs, rl)
			warnings = append(warnings, fmt.Sprintf("CRL %d not used for the configured CA of its name: %v (kept for a chain CA of that name whose key signed it)", i+1, err))
		default:
			warnings = append(warnings, fmt.Sprintf("CRL %d not used: %v", i+1, err))
		}
	}
	for _, c := range t.crls.CRLs() {
		if c.Future {
			warnings = append(warnings, futureWarning(c.Header, o.Now, o.ClockSkew))
		}
	}
	for _, rl := range t.chainCRLs {
		if !o.Now.IsZero() && rl.ThisUpdate.After(o.Now.Add(o.ClockSkew)) {
			warnings = append(warnings, futureWarning(rl, o.Now, o.ClockSkew))
		}
	}
	return t, warnings, nil
}

// futureWarning says that a CRL dated beyond now plus the clock skew is
// used for its revocations only (crl.Index.KeepFuture).
func futureWarning(h *x509.RevocationList, now time.Time, skew time.Duration) string {
	return fmt.Sprintf("CRL of %s: thisUpdate %s is after now %s plus clock skew %s (its CA's clock runs ahead?): its revocations and holds are used, but it lifts no hold of the CA's other CRLs",
		h.Issuer.String(), h.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
}

// StaleCRLs names the CRLs of the trust store (those of configured CAs and
// those kept for chain CAs) whose nextUpdate is before now (for a CRL
// without nextUpdate, its thisUpdate plus TrustOptions.MaxAge, as the CRL
// job judges it): still used, since an old list of revocations is better
// than none, but the CRL job (or fetch-crl) that should refresh them is
// not doing so. A configured CA's CRL that a later one of the CA
// supersedes (crl.Index.Superseded: a scope it abandoned for a complete
// CRL, or its old key's CRL once it is re-keyed under its name by the same
// parent and the new key's CRL speaks for the old key's certificates) is
// left out, as the CRL job leaves it out of its stale warnings.
func (t *Trust) StaleCRLs(now time.Time) []string {
	var out []string
	stale := func(h *x509.RevocationList) {
		nu := crl.NextUpdate(h, t.maxAge)
		if !nu.Before(now) {
			return
		}
		if h.NextUpdate.IsZero() {
			out = append(out, fmt.Sprintf("CRL of %s has no nextUpdate and is older than %s (thisUpdate %s)", h.Issuer.String(), nu.Sub(h.ThisUpdate), h.ThisUpdate.UTC().Format(time.RFC3339)))
			return
		}
		out = append(out, fmt.Sprintf("CRL of %s is past its nextUpdate %s", h.Issuer.String(), nu.UTC().Format(time.RFC3339)))
	}
	for _, c := range t.crls.CRLs() {
		if !t.crls.Superseded(c) {
			stale(c.Header)
		}
	}
	for _, rl := range t.chainCRLs {
		stale(rl)
	}
	sort.Strings(out)
	return out
}

// VO returns a VO's policy.
func (t *Trust) VO(name string) (*VOPolicy, bool) {
	p, ok := t.vos[name]
	return p, ok
}

// caKey is what makes two CA certificates the same holder: the key. A CA
// re-issued with another serial, validity or name is the same CA to anyone
// who holds its key, and x509.Verify builds chains through any copy.
func caKey(c *x509.Certificate) string {
	return string(c.RawSubjectPublicKeyInfo)
}

// isSelfSigned reports whether c is a root: issued by itself and signed with
// its own key. The signature is checked with CheckSignature, which accepts
// SHA-1 (CheckSignatureFrom does not): long-lived roots still carry SHA-1
// self-signatures, and a root's own signature is never what trust rests on.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// LoadTrust reads the [trust] and [vo.*] sections of a configuration, and
// trust.require_bound_uuids (TrustOptions.RequireBoundUUIDs). A
// CRL whose thisUpdate is beyond now plus crl.clock_skew is used for its
// revocations and holds only (a warning; the CRL job refuses it and keeps
// the CA's previous CRL, which the trust store has not); crl.no_next_update_max_age is the
// age at which a CRL without nextUpdate is stale (StaleCRLs).
func LoadTrust(c *config.Config) (*Trust, []string, error) {
	var o TrustOptions
	var crlFiles []string
	ns := &Namespaces{}
	for _, f := range c.Trust.CAFiles {
		certs, err := readAnchorFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.ca_files: %w", err)
		}
		o.People = append(o.People, certs...)
	}
	var warnings []string
	// A directory from which no CA loads is an error, unless other people
	// CAs are configured (trust.ca_files, another directory): the services
	// must not start trusting no one without saying why.
	type emptyDir struct {
		dir   string
		warns []string
	}
	var empty []emptyDir
	now := time.Now()
	enforce := c.Trust.Namespaces != "ignore"
	// every directory is read before any policy is used: whether a CA has
	// a policy file of its own (which other CAs' files cannot widen) is
	// decided across all of them
	var dirs []*caDir
	for _, d := range c.Trust.CADirs {
		if err := fsutil.CheckNotWritableByOthers(d); errors.Is(err, fsutil.ErrWritable) {
			return nil, nil, fmt.Errorf("trust.ca_dirs %s: a user other than root and the one this runs as could add a CA to it: %w", d, err)
		} else if err != nil {
			return nil, nil, fmt.Errorf("trust.ca_dirs %s: %w", d, err)
		}
		s, err := scanCADir(d, enforce, now)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.ca_dirs %s: %w", d, err)
		}
		dirs = append(dirs, s)
	}
	if enforce {
		if err := applyCADirs(dirs, ns); err != nil {
			return nil, nil, fmt.Errorf("trust.ca_dirs %w", err)
		}
	}
	for _, d := range dirs {
		if len(d.certs) == 0 {
			empty = append(empty, emptyDir{d.dir, d.warnings})
		}
		o.People = append(o.People, d.certs...)
		crlFiles = append(crlFiles, d.crls...)
		warnings = append(warnings, d.warnings...)
	}
	for _, e := range empty {
		if len(o.People) > 0 {
			warnings = append(warnings, fmt.Sprintf("trust.ca_dirs %s: no CA certificate loaded from it (other people CAs are configured)", e.dir))
			continue
		}
		why := "no <hash>.N certificate file"
		if len(e.warns) > 0 {
			shown := e.warns
			if len(shown) > 3 {
				shown = append(shown[:3:3], fmt.Sprintf("and %d more", len(e.warns)-3))
			}
			why = strings.Join(shown, "; ")
		}
		return nil, nil, fmt.Errorf("trust.ca_dirs %s: no CA certificate loaded, and no other people CA is configured: %s", e.dir, why)
	}
	for _, f := range c.Trust.RegistrarCAFiles {
		certs, err := readAnchorFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.registrar_ca_files: %w", err)
		}
		o.Registrar = append(o.Registrar, certs...)
	}
	// A CRL file named in the configuration must be there and parse: a
	// typo in trust.crl_files would otherwise drop revocation checking with
	// a warning only (a CA file's typo stops the command). Those of a
	// ca_dirs directory (<hash>.rN, fetched by cron) may lag or break:
	// they are warned of.
	for _, f := range c.Trust.CRLFiles {
		b, err := fsutil.ReadRegular(f, crl.MaxSize)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.crl_files: %s: %w", f, err)
		}
		if _, err := crl.Parse(b); err != nil {
			return nil, nil, fmt.Errorf("trust.crl_files: %s: %w", f, err)
		}
	}
	crlFiles = append(crlFiles, c.Trust.CRLFiles...)
	// a weak CA key is not refused here (an IGTF directory may carry a
	// legacy CA nobody uses), but no chain through it verifies: say so
	for _, ca := range append(append([]*x509.Certificate{}, o.People...), o.Registrar...) {
		if err := cms.CheckPublicKey(ca.PublicKey); err != nil {
			warnings = append(warnings, fmt.Sprintf("CA %q: %v: no chain through it is accepted", SubjectName(ca), err))
		}
	}
	for _, f := range crlFiles {
		b, err := readCRLFile(f)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("CRL %s: %v", f, err))
			continue
		}
		// a CRL is signed, so a local user can only put an older list of
		// the same CA in its place (or none): it is used, with a warning
		if err := fsutil.CheckNotWritableByOthers(f); errors.Is(err, fsutil.ErrWritable) {
			warnings = append(warnings, fmt.Sprintf("CRL %s: used, but a user other than root and the one this runs as could replace it with an older list: %v", f, err))
		} else if err != nil {
			warnings = append(warnings, fmt.Sprintf("CRL %s: used, but its owner and mode could not be checked: %v", f, err))
		}
		o.CRLs = append(o.CRLs, b)
	}
	o.Now, o.ClockSkew, o.MaxAge = now, c.CRL.ClockSkew.Duration, c.CRL.NoNextUpdateMaxAge.Duration
	o.VOs = map[string]*VOPolicy{}
	for name, vo := range c.VO {
		p := &VOPolicy{Name: name}
		for _, s := range vo.Creators {
			dn, err := ParseDN(s)
			if err != nil {
				return nil, nil, fmt.Errorf("vo.%s.creators: %w", name, err)
			}
			p.Creators = append(p.Creators, dn)
		}
		for _, s := range vo.Approvers {
			dn, err := ParseDN(s)
			if err != nil {
				return nil, nil, fmt.Errorf("vo.%s.approvers: %w", name, err)
			}
			p.Approvers = append(p.Approvers, dn)
		}
		for _, s := range vo.ListingSigners {
			dn, err := ParseDN(s)
			if err != nil {
				return nil, nil, fmt.Errorf("vo.%s.listing_signers: %w", name, err)
			}
			p.ListingSigners = append(p.ListingSigners, dn)
		}
		o.VOs[name] = p
	}
	if c.Trust.Namespaces != "ignore" && ns.Len() > 0 {
		o.Namespaces = ns
	}
	o.Strict = c.Trust.Strict
	o.RequireCRL = c.Trust.RequireCRL
	// a [trust] setting, applied by every reader of the trust store: the
	// gate must refuse what the sync would no longer mirror (a squat
	// mirrored before the switch keeps its uuid in Glance)
	o.RequireBoundUUIDs = c.Trust.RequireBoundUUIDs
	t, w, err := NewTrust(o)
	if err != nil {
		return nil, nil, err
	}
	return t, append(warnings, w...), nil
}

// ReadCertificates reads a PEM bundle (or one DER certificate).
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := fsutil.ReadRegular(path, MaxCADirFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// readAnchorFile reads a configured CA file (trust.ca_files,
// trust.registrar_ca_files), refusing one that any local user could change
// or replace: whoever writes it chooses whom the site trusts.
func readAnchorFile(path string) ([]*x509.Certificate, error) {
	certs, err := ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	if err := fsutil.CheckNotWritableByOthers(path); errors.Is(err, fsutil.ErrWritable) {
		return nil, fmt.Errorf("%s: a user other than root and the one this runs as could change whom this site trusts: %w", path, err)
	} else if err != nil {
		return nil, fmt.Errorf("%s: its owner and mode could not be checked: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates parses a PEM bundle or one DER certificate.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" && blk.Type != "TRUSTED CERTIFICATE" {
			continue
		}
		c, err := parsePEMCertificate(blk)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate found")
	}
	return out, nil
}

func isHexString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
