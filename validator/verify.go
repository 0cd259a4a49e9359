package validator

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
)

// Check names, in the order they are reported.
const (
	CheckDescriptor = "descriptor"  // 1. the descriptor parses and is well-formed
	CheckSignatures = "signatures"  // 2. the CMS parses and every signature is valid
	CheckCreator    = "creator"     // 3. an authorised creator signed
	CheckApprover   = "approver"    // 3. an authorised approver, not the creator, signed
	CheckRegistrar  = "registrar"   // 4. a Registrar-issued image certificate for this uuid signed
	CheckSignerTime = "signer-time" // 5. creator and approver valid at registration
	CheckExpiry     = "expiry"      // 5. the image certificate is valid now
	CheckRevocation = "revocation"  // 6. nothing in the three chains is revoked
	CheckImage      = "image"       // 7. size and sha512 of the image bytes
)

// Reasons are the named causes of a failed check.
const (
	ReasonDescriptorInvalid   = "descriptor-invalid"
	ReasonCMSInvalid          = "cms-invalid"
	ReasonBadSignature        = "bad-signature"
	ReasonExtraSigner         = "unexpected-signer"
	ReasonNoCreator           = "no-creator"
	ReasonCreatorUntrusted    = "creator-untrusted"
	ReasonCreatorNotListed    = "creator-not-authorised"
	ReasonUnknownVO           = "unknown-vo"
	ReasonNoApprover          = "no-approver"
	ReasonApproverUntrusted   = "approver-untrusted"
	ReasonApproverNotListed   = "approver-not-authorised"
	ReasonCreatorIsApprover   = "creator-is-approver"
	ReasonNoImageSigner       = "no-image-signer"
	ReasonImageCertUntrusted  = "image-cert-untrusted"
	ReasonImageCertPeopleCA   = "image-cert-from-people-ca"
	ReasonUUIDMismatch        = "uuid-mismatch"
	ReasonUUIDNotBound        = "uuid-not-bound"
	ReasonCreatedAfterReg     = "created-after-registration"
	ReasonSignerInvalidAtReg  = "signer-invalid-at-registration"
	ReasonOutsideNamespace    = "outside-ca-namespace"
	ReasonExpired             = "expired"
	ReasonNotYetValid         = "not-yet-valid"
	ReasonRevoked             = "revoked"
	ReasonRevocationUnknown   = "revocation-unknown"
	ReasonSizeMismatch        = "size-mismatch"
	ReasonSHA512Mismatch      = "sha512-mismatch"
	ReasonImageUnreadable     = "image-unreadable"
	ReasonNotChecked          = "not-checked"
	ReasonPrerequisiteMissing = "prerequisite-failed"
)

// Reasons are all the Reason* values, for metrics that start every label
// at zero (TestReasonsComplete keeps the list whole).
var Reasons = []string{
	ReasonDescriptorInvalid, ReasonCMSInvalid, ReasonBadSignature, ReasonExtraSigner,
	ReasonNoCreator, ReasonCreatorUntrusted, ReasonCreatorNotListed, ReasonUnknownVO,
	ReasonNoApprover, ReasonApproverUntrusted, ReasonApproverNotListed, ReasonCreatorIsApprover,
	ReasonNoImageSigner, ReasonImageCertUntrusted, ReasonImageCertPeopleCA, ReasonUUIDMismatch,
	ReasonCreatedAfterReg, ReasonSignerInvalidAtReg, ReasonOutsideNamespace, ReasonExpired,
	ReasonNotYetValid, ReasonRevoked, ReasonRevocationUnknown, ReasonSizeMismatch,
	ReasonSHA512Mismatch, ReasonImageUnreadable, ReasonNotChecked, ReasonPrerequisiteMissing,
	ReasonUUIDNotBound,
}

// Check is the outcome of one check.
type Check struct {
	Name string `json:"check"`
	// OK is true when the check passed.
	OK bool `json:"ok"`
	// Skipped is true when the check could not run (an earlier check failed,
	// or no image bytes were given).
	Skipped bool `json:"skipped,omitempty"`
	// Reason names the failure (one of the Reason constants).
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Signer describes one signer of a bundle.
type Signer struct {
	Role        string            `json:"role"`
	Certificate *x509.Certificate `json:"-"`
	// Chain is the verified chain, leaf first, root last (nil if unverified).
	Chain       [][]*x509.Certificate `json:"-"`
	Subject     string                `json:"subject"`
	Issuer      string                `json:"issuer"`
	Serial      string                `json:"serial"`
	NotBefore   time.Time             `json:"not_before"`
	NotAfter    time.Time             `json:"not_after"`
	SigningTime time.Time             `json:"signing_time,omitzero"`
	Algorithm   string                `json:"algorithm"`
}

// Result is the whole verdict on a bundle: every check, and what was found.
type Result struct {
	Descriptor *Descriptor `json:"descriptor,omitempty"`
	Checks     []Check     `json:"checks"`
	Creator    *Signer     `json:"creator,omitempty"`
	Approver   *Signer     `json:"approver,omitempty"`
	Image      *Signer     `json:"image,omitempty"`
	// RegisteredAt is the image certificate's notBefore.
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	// ExpiresAt is the image certificate's notAfter.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Revocation is set when a certificate of the chains is revoked.
	Revocation *Revocation `json:"-"`
	// Valid: every check passed (image bytes included when they were given).
	Valid bool `json:"valid"`
	// ExpiredOnly: the only failed check is expiry, by the image certificate
	// being past its notAfter (a site may run such an image anyway).
	ExpiredOnly bool `json:"expired_only"`
}

// Failed returns the failed (not skipped) checks.
func (r *Result) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			out = append(out, c)
		}
	}
	return out
}

// Check returns the named check.
func (r *Result) Check(name string) Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{Name: name}
}

// Err returns nil for a valid result, else a *VerificationFailure naming
// every failed check.
func (r *Result) Err() error {
	if r.Valid {
		return nil
	}
	f := r.Failed()
	parts := make([]string, 0, len(f))
	reasons := make([]string, 0, len(f))
	for _, c := range f {
		parts = append(parts, fmt.Sprintf("%s: %s (%s)", c.Name, c.Reason, c.Detail))
		reasons = append(reasons, c.Reason)
	}
	if len(parts) == 0 {
		parts = append(parts, "not verified")
		reasons = append(reasons, ReasonNotChecked)
	}
	return &VerificationFailure{Reasons: reasons, err: errors.New(strings.Join(parts, "; "))}
}

// Input is what Verify judges.
type Input struct {
	Descriptor []byte
	Signature  []byte
	// Image, when non-nil, is read once to check size and sha512 (check 7).
	Image io.Reader
	// Now is the time of the judgement.
	Now time.Time
}

// Verify runs every check on a bundle and reports each outcome.
func (t *Trust) Verify(in Input) *Result {
	r := &Result{}
	add := func(c Check) { r.Checks = append(r.Checks, c) }
	fail := func(name, reason, detail string) { add(Check{Name: name, Reason: reason, Detail: detail}) }
	skip := func(names ...string) {
		for _, n := range names {
			add(Check{Name: n, Skipped: true, Reason: ReasonPrerequisiteMissing})
		}
	}

	// 1. descriptor
	d, err := ParseDescriptor(in.Descriptor)
	switch {
	case err != nil:
		fail(CheckDescriptor, ReasonDescriptorInvalid, err.Error())
	case d.checkBinding(t.requireBound) != nil:
		// the descriptor is kept: the other checks still say who signed
		// it, and the sync names its VO in the refusal
		r.Descriptor = d
		fail(CheckDescriptor, ReasonUUIDNotBound, d.checkBinding(t.requireBound).Error())
	default:
		r.Descriptor = d
		bound := ""
		if d.UUIDSeed != "" {
			bound = " (bound)"
		}
		add(Check{Name: CheckDescriptor, OK: true, Detail: fmt.Sprintf("uuid %s%s, vo %s, tag %s", d.UUID, bound, d.VO, d.Tag)})
	}

	// 2. CMS and every signature
	sd, err := cms.Parse(in.Signature)
	if err != nil {
		fail(CheckSignatures, ReasonCMSInvalid, err.Error())
		skip(CheckCreator, CheckApprover, CheckRegistrar, CheckSignerTime, CheckExpiry, CheckRevocation)
		t.checkImage(r, in)
		return r.finish()
	}
	sigOK := true
	for i := range sd.Signers {
		s := &sd.Signers[i]
		if err := s.Verify(in.Descriptor); err != nil {
			fail(CheckSignatures, ReasonBadSignature, fmt.Sprintf("signer %d (%s): %v", i+1, SubjectName(s.Certificate), err))
			sigOK = false
			break
		}
	}
	if sigOK {
		add(Check{Name: CheckSignatures, OK: true, Detail: fmt.Sprintf("%d valid signatures", len(sd.Signers))})
	}

	// classify signers: the image signer holds a urn:uuid: URI; people sign
	// first (creator) and second (approver).
	var people []*cms.Signer
	var images []*cms.Signer
	for i := range sd.Signers {
		s := &sd.Signers[i]
		if imageUUIDs(s.Certificate) != nil {
			images = append(images, s)
		} else {
			people = append(people, s)
		}
	}
	extra := ""
	if len(people) > 2 {
		extra = fmt.Sprintf("%d personal signers; expected a creator and an approver", len(people))
	}
	if len(images) > 1 {
		extra = fmt.Sprintf("%d image signers; expected one", len(images))
	}

	inter := &interPools{t: t, embedded: sd.Certificates}

	// 4 first: the registration time anchors the creator and approver checks.
	var imgSigner *cms.Signer
	if len(images) > 0 {
		imgSigner = images[0]
	}
	r.Image = describeSigner("image", imgSigner)
	var registeredAt time.Time
	if imgSigner == nil {
		fail(CheckRegistrar, ReasonNoImageSigner, "no signer holds an image certificate (subjectAltName urn:uuid:...): the bundle is not registered")
	} else {
		c := imgSigner.Certificate
		registeredAt = c.NotBefore
		r.RegisteredAt, r.ExpiresAt = c.NotBefore, c.NotAfter
		chains, err := t.verifyRegistrar(c, inter)
		switch {
		case err != nil:
			if t.chainsToPeople(c, inter) {
				fail(CheckRegistrar, ReasonImageCertPeopleCA, fmt.Sprintf("image certificate %q was issued by a people CA, not a Registrar CA", SubjectName(c)))
			} else {
				fail(CheckRegistrar, ReasonImageCertUntrusted, fmt.Sprintf("image certificate %q: %v", SubjectName(c), err))
			}
		case t.checkNamespaces(chains[0]) != nil:
			fail(CheckRegistrar, ReasonOutsideNamespace, fmt.Sprintf("image certificate: %v", t.checkNamespaces(chains[0])))
		case c.IsCA || (c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0):
			fail(CheckRegistrar, ReasonImageCertUntrusted, fmt.Sprintf("image certificate %q is not an end-entity signing certificate (CA:%v, keyUsage %#x)", SubjectName(c), c.IsCA, c.KeyUsage))
		case len(imageUUIDs(c)) != 1:
			fail(CheckRegistrar, ReasonUUIDMismatch, fmt.Sprintf("image certificate names %d urn:uuid: URIs; it must name exactly one", len(imageUUIDs(c))))
		case d != nil && !containsString(imageUUIDs(c), d.UUID):
			r.Image.Chain = chains
			fail(CheckRegistrar, ReasonUUIDMismatch, fmt.Sprintf("image certificate names %s, descriptor uuid is %s", strings.Join(imageUUIDs(c), ", "), d.UUID))
		case extra != "":
			r.Image.Chain = chains
			fail(CheckRegistrar, ReasonExtraSigner, extra)
		case d != nil && d.CreatedTime.After(c.NotBefore.Add(CreatedSkew)):
			// a descriptor dated later than its registration would be the
			// newest of its tag until that date (a typo in the year pins a
			// tag for years)
			r.Image.Chain = chains
			fail(CheckRegistrar, ReasonCreatedAfterReg, fmt.Sprintf("descriptor created %s, after the image was registered (%s)", d.CreatedTime.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339)))
		default:
			r.Image.Chain = chains
			add(Check{Name: CheckRegistrar, OK: true, Detail: fmt.Sprintf("image certificate serial %x issued by %q", c.SerialNumber, IssuerName(c))})
		}
	}
	regTime := registeredAt
	if regTime.IsZero() {
		regTime = in.Now
	}

	// 3. creator and approver
	var vo *VOPolicy
	if d != nil {
		vo = t.vos[d.VO]
	}
	creator, approver := assignPeople(people, vo)
	r.Creator = describeSigner("creator", creator)
	r.Approver = describeSigner("approver", approver)
	creatorTimeErr := t.judgePerson(r, CheckCreator, creator, vo, d, inter, regTime)
	approverTimeErr := t.judgePerson(r, CheckApprover, approver, vo, d, inter, regTime)
	if creator != nil && approver != nil {
		if why := SamePerson(creator.Certificate, approver.Certificate); why != "" {
			for i := range r.Checks {
				if r.Checks[i].Name == CheckApprover {
					r.Checks[i] = Check{Name: CheckApprover, Reason: ReasonCreatorIsApprover, Detail: fmt.Sprintf("approver %q %s: an image needs two different people", SubjectName(approver.Certificate), why)}
				}
			}
		}
	}

	// 5. signer validity at registration, image validity now
	switch {
	case imgSigner == nil:
		skip(CheckSignerTime, CheckExpiry)
	default:
		var bad []string
		for _, e := range []error{creatorTimeErr, approverTimeErr} {
			if e != nil {
				bad = append(bad, e.Error())
			}
		}
		if len(bad) > 0 {
			fail(CheckSignerTime, ReasonSignerInvalidAtReg, strings.Join(bad, "; "))
		} else if creator == nil || approver == nil {
			add(Check{Name: CheckSignerTime, Skipped: true, Reason: ReasonPrerequisiteMissing})
		} else {
			add(Check{Name: CheckSignerTime, OK: true, Detail: "creator and approver certificates were valid at registration " + registeredAt.UTC().Format(time.RFC3339)})
		}
		c := imgSigner.Certificate
		switch {
		case in.Now.Before(c.NotBefore):
			fail(CheckExpiry, ReasonNotYetValid, "image certificate is valid from "+c.NotBefore.UTC().Format(time.RFC3339))
		case in.Now.After(c.NotAfter):
			fail(CheckExpiry, ReasonExpired, "image expired on "+c.NotAfter.UTC().Format(time.RFC3339))
		default:
			add(Check{Name: CheckExpiry, OK: true, Detail: "image valid until " + c.NotAfter.UTC().Format(time.RFC3339)})
		}
	}

	// 6. revocation of the three chains
	t.checkRevocation(r, registeredAt)

	// 7. image bytes
	t.checkImage(r, in)
	return r.finish()
}

// checkOrder is the order checks are reported in.
var checkOrder = map[string]int{
	CheckDescriptor: 1, CheckSignatures: 2, CheckCreator: 3, CheckApprover: 4, CheckRegistrar: 5,
	CheckSignerTime: 6, CheckExpiry: 7, CheckRevocation: 8, CheckImage: 9,
}

func (r *Result) finish() *Result {
	sort.SliceStable(r.Checks, func(i, j int) bool { return checkOrder[r.Checks[i].Name] < checkOrder[r.Checks[j].Name] })
	valid := true
	onlyExpiry := true
	for _, c := range r.Checks {
		if c.OK || (c.Skipped && c.Name == CheckImage && c.Reason == ReasonNotChecked) {
			continue
		}
		valid = false
		if c.Skipped || c.Name != CheckExpiry || c.Reason != ReasonExpired {
			onlyExpiry = false
		}
	}
	r.Valid = valid
	// (not valid: a check counted, and only a failed expiry leaves
	// onlyExpiry set)
	r.ExpiredOnly = !valid && onlyExpiry
	return r
}

// assignPeople decides which personal signer is the creator and which the
// approver. CMS keeps SignerInfos in a DER SET, whose order is not the signing
// order, so roles come from the VO's lists: the assignment that authorises
// more signers wins; on a tie the earlier signingTime is the creator's.
// CreatedSkew is how much later than the image certificate's notBefore a
// descriptor's created time may be (publishers' clocks; register dates
// notBefore a minute back).
const CreatedSkew = time.Hour

// SamePerson says why two personal certificates are one person's for the
// two-person rule ("has the creator's subject", "holds the creator's key"),
// or "" when they are not: the same subject, compared as DNs (case and
// spaces folded), or the same public key, whatever the subject (one key
// pair signing twice under two names is one signer).
func SamePerson(creator, approver *x509.Certificate) string {
	cs, _ := DNFromRaw(creator.RawSubject)
	as, _ := DNFromRaw(approver.RawSubject)
	if cs.Equal(as) {
		return "has the creator's subject"
	}
	if bytes.Equal(creator.RawSubjectPublicKeyInfo, approver.RawSubjectPublicKeyInfo) {
		return "holds the creator's key"
	}
	if k, ok := creator.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(approver.PublicKey) {
		return "holds the creator's key"
	}
	return ""
}

func assignPeople(people []*cms.Signer, vo *VOPolicy) (creator, approver *cms.Signer) {
	listed := func(s *cms.Signer, list []DN) int {
		if vo == nil {
			return 0
		}
		subj, err := DNFromRaw(s.Certificate.RawSubject)
		if err != nil {
			return 0
		}
		for _, dn := range list {
			if dn.Equal(subj) {
				return 1
			}
		}
		return 0
	}
	var creators, approvers []DN
	if vo != nil {
		creators, approvers = vo.Creators, vo.Approvers
	}
	switch len(people) {
	case 0:
		return nil, nil
	case 1:
		if listed(people[0], creators) == 0 && listed(people[0], approvers) == 1 {
			return nil, people[0]
		}
		return people[0], nil
	}
	a, b := people[0], people[1]
	ab := listed(a, creators) + listed(b, approvers)
	ba := listed(b, creators) + listed(a, approvers)
	if ba > ab || (ba == ab && !b.SigningTime.IsZero() && b.SigningTime.Before(a.SigningTime)) {
		return b, a
	}
	return a, b
}

// judgePerson runs check 3 for one personal signer, returning the error of
// its chain at registration time (for check 5) separately.
func (t *Trust) judgePerson(r *Result, name string, s *cms.Signer, vo *VOPolicy, d *Descriptor, inter *interPools, regTime time.Time) error {
	fail := func(reason, detail string) {
		r.Checks = append(r.Checks, Check{Name: name, Reason: reason, Detail: detail})
	}
	noSigner, untrusted, notListed := ReasonNoCreator, ReasonCreatorUntrusted, ReasonCreatorNotListed
	if name == CheckApprover {
		noSigner, untrusted, notListed = ReasonNoApprover, ReasonApproverUntrusted, ReasonApproverNotListed
	}
	if s == nil {
		fail(noSigner, "the bundle has no "+name+" signature")
		return nil
	}
	c := s.Certificate
	// The chain must lead to a people CA (verifyPerson); a certificate not
	// valid at registration is still "trusted" here, and the time failure
	// is reported by check 5.
	chains, notValidAtReg, err := t.verifyPerson(c, inter, regTime)
	var timeErr error
	if notValidAtReg {
		timeErr = fmt.Errorf("%s certificate %q was not valid at registration %s (valid %s to %s)", name, SubjectName(c),
			regTime.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if err != nil {
		if t.chainsToRegistrar(c, inter) {
			fail(untrusted, fmt.Sprintf("%s certificate %q chains to a Registrar CA, not to a people CA", name, SubjectName(c)))
		} else {
			fail(untrusted, fmt.Sprintf("%s certificate %q: %v", name, SubjectName(c), err))
		}
		return timeErr
	}
	if err := t.checkNamespaces(chains[0]); err != nil {
		fail(ReasonOutsideNamespace, fmt.Sprintf("%s certificate: %v", name, err))
		return timeErr
	}
	// a person signs with an end-entity certificate whose key may make
	// signatures (RFC 5280 4.2.1.3: digitalSignature, or contentCommitment
	// for non-repudiation), as the image certificate must
	const signing = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	if c.IsCA || (c.KeyUsage != 0 && c.KeyUsage&signing == 0) {
		fail(untrusted, fmt.Sprintf("%s certificate %q is not an end-entity signing certificate (CA:%v, keyUsage %#x)", name, SubjectName(c), c.IsCA, c.KeyUsage))
		return timeErr
	}
	signer := r.Creator
	if name == CheckApprover {
		signer = r.Approver
	}
	signer.Chain = chains
	if d == nil {
		fail(ReasonPrerequisiteMissing, "no valid descriptor: the VO is unknown")
		return timeErr
	}
	if vo == nil {
		fail(ReasonUnknownVO, fmt.Sprintf("VO %q is not configured at this site", d.VO))
		return timeErr
	}
	list := vo.Creators
	if name == CheckApprover {
		list = vo.Approvers
	}
	subj, err := DNFromRaw(c.RawSubject)
	if err != nil {
		fail(untrusted, err.Error())
		return timeErr
	}
	for _, dn := range list {
		if dn.Equal(subj) {
			r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: fmt.Sprintf("%s of VO %s", subj.OneLine(), d.VO)})
			return timeErr
		}
	}
	fail(notListed, fmt.Sprintf("%s is not among the %ss of VO %s", quoteShort(subj.OneLine()), name, d.VO))
	return timeErr
}

// verifyPerson builds a creator's or approver's chain to a people root at
// registration time, through the embedded certificates and the people
// intermediates; when that fails on time alone (notValidAtReg), again
// within the certificate's own validity, to judge the chain itself: being
// valid at registration is check 5's question, not the chain's. Verify
// (check 3) and CheckRecordChains ask it the same way.
func (t *Trust) verifyPerson(c *x509.Certificate, inter *interPools, regTime time.Time) (chains [][]*x509.Certificate, notValidAtReg bool, err error) {
	chains, err = t.verifyPeople(c, inter, regTime)
	var inv x509.CertificateInvalidError
	if err != nil && errors.As(err, &inv) && inv.Reason == x509.Expired {
		notValidAtReg = true
		chains, err = t.verifyPeople(c, inter, c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore)/2))
	}
	return chains, notValidAtReg, err
}

func (t *Trust) verifyPeople(c *x509.Certificate, inter *interPools, at time.Time) ([][]*x509.Certificate, error) {
	return strongChains(c.Verify(x509.VerifyOptions{Roots: t.peopleRoots, Intermediates: inter.people(), CurrentTime: at, KeyUsages: signerKeyUsages}))
}

// signerKeyUsages are the extended key usages a people chain must allow
// (crypto/x509 nests them: each certificate of the chain with an EKU, the
// root and the leaf too, must name one of them or anyExtendedKeyUsage; a
// certificate without EKU restricts nothing). clientAuth and
// emailProtection are what IGTF personal and robot certificates carry
// (and S/MIME CAs), codeSigning fits a signature on an image. So a CA
// restricted to TLS servers (serverAuth) vouches for no signer, while IGTF
// CAs (no EKU) and leaves without EKU are taken as before.
var signerKeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageCodeSigning}

// interPools are one Verify's pools of intermediates: the certificates the
// signature carries, then the trust store's people or Registrar
// intermediates, each built once a Verify on first use (the trust store may
// hold hundreds: adding them for every signer and check cost more than the
// rest of a Verify). The embedded certificates come first, as chain
// building tries a pool's candidates in order.
type interPools struct {
	t                  *Trust
	embedded           []*x509.Certificate
	withPeople, withRe *x509.CertPool
}

func (p *interPools) people() *x509.CertPool { return p.with(&p.withPeople, p.t.peopleInterCerts) }

func (p *interPools) registrar() *x509.CertPool { return p.with(&p.withRe, p.t.regInterCerts) }

// with returns *pool, first built of the embedded certificates and then
// trusted.
func (p *interPools) with(pool **x509.CertPool, trusted []*x509.Certificate) *x509.CertPool {
	if *pool == nil {
		*pool = x509.NewCertPool()
		appendPool(*pool, p.embedded)
		appendPool(*pool, trusted)
	}
	return *pool
}

// strongChains drops the chains that hold a CA key weaker than the signers'
// own minimum (cms.MinRSABits, P-256): a 1024-bit root or intermediate
// would let whoever factors it issue any signer or image certificate.
func strongChains(chains [][]*x509.Certificate, err error) ([][]*x509.Certificate, error) {
	if err != nil {
		return nil, err
	}
	var weak error
	chains = slices.DeleteFunc(chains, func(ch []*x509.Certificate) bool {
		for _, c := range ch[1:] {
			if e := cms.CheckPublicKey(c.PublicKey); e != nil {
				weak = fmt.Errorf("CA %q: %w", SubjectName(c), e)
				return true
			}
		}
		return false
	})
	if len(chains) == 0 {
		return nil, fmt.Errorf("every chain holds a weak key: %w", weak)
	}
	return chains, nil
}

// verifyRegistrar builds the image certificate's chain to a Registrar root,
// at registration time (its own expiry is check 5's business), through
// Registrar intermediates only.
func (t *Trust) verifyRegistrar(c *x509.Certificate, inter *interPools) ([][]*x509.Certificate, error) {
	chains, err := strongChains(c.Verify(x509.VerifyOptions{Roots: t.regRoots, Intermediates: t.regInter, CurrentTime: c.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}))
	chains, err = withinCAs(c, chains, err)
	if err != nil {
		// embedded intermediates may be Registrar sub-CAs; accept them only if
		// no certificate of the chain is a people CA
		chains, err = strongChains(c.Verify(x509.VerifyOptions{Roots: t.regRoots, Intermediates: inter.registrar(), CurrentTime: c.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}))
		chains, err = withinCAs(c, chains, err)
		if err == nil {
			chains = slices.DeleteFunc(chains, t.throughPeopleCA)
			if len(chains) == 0 {
				err = errors.New("its only chains to a Registrar root pass through a people CA")
			}
		}
	}
	return chains, err
}

// withinCAs drops the chains of the image certificate c in which a CA
// expires before c does. The chain is judged at registration, so c's own
// notAfter is all that ends the image (check 5, the catalogue record's
// imagetrust_image_not_after, the proxy): an image certificate that
// outlived its Registrar CA would keep the image valid after the CA's
// expiry. register caps --expires at its CA's; an image certificate made
// otherwise is refused unless a chain through CA certificates valid until
// its own expiry (a re-issued CA certificate, same name and key) exists.
func withinCAs(c *x509.Certificate, chains [][]*x509.Certificate, err error) ([][]*x509.Certificate, error) {
	if err != nil {
		return nil, err
	}
	var early *x509.Certificate
	chains = slices.DeleteFunc(chains, func(ch []*x509.Certificate) bool {
		for _, ca := range ch[1:] {
			if ca.NotAfter.Before(c.NotAfter) {
				early = ca
				return true
			}
		}
		return false
	})
	if len(chains) == 0 {
		return nil, fmt.Errorf("it is valid until %s, after its Registrar CA %q (valid until %s): an image certificate may not outlive its CA",
			c.NotAfter.UTC().Format(time.RFC3339), SubjectName(early), early.NotAfter.UTC().Format(time.RFC3339))
	}
	return chains, nil
}

// throughPeopleCA reports whether a chain holds a people CA (by its key,
// under any name) above its leaf.
func (t *Trust) throughPeopleCA(chain []*x509.Certificate) bool {
	for _, c := range chain[1:] {
		if t.peopleCAs[caKey(c)] {
			return true
		}
	}
	return false
}

func (t *Trust) chainsToPeople(c *x509.Certificate, inter *interPools) bool {
	_, err := t.verifyPeople(c, inter, c.NotBefore)
	return err == nil
}

func (t *Trust) chainsToRegistrar(c *x509.Certificate, inter *interPools) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: t.regRoots, Intermediates: inter.registrar(), CurrentTime: c.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// checkNamespaces applies the trust store's IGTF name constraints to every
// certificate of a chain below its root. A CA's policy is its own only if
// it is the trust store's CA of that name (ownsName).
func (t *Trust) checkNamespaces(chain []*x509.Certificate) error {
	return t.ns.checkChain(chain, t.ownsName)
}

// ownsName reports whether c, a CA of a verified chain, may take the
// namespace policy of its name: it is a CA of the trust store (by name and
// key, whichever certificate carries them), or no CA of the trust store
// bears its name (a sub-CA an IGTF namespaces file names, not shipped,
// brought by a signature). A CA brought by a signature under a configured
// CA's name and another key is not that CA: a constrained CA that may
// issue such a name must not gain that CA's namespace by doing so.
func (t *Trust) ownsName(c *x509.Certificate, subject DN) bool {
	named := false
	for i, a := range t.anchors {
		if !t.anchorDNs[i].Equal(subject) {
			continue
		}
		named = true
		if caKey(a) == caKey(c) {
			return true
		}
	}
	return !named
}

func appendPool(dst *x509.CertPool, src []*x509.Certificate) {
	for _, c := range src {
		dst.AddCert(c)
	}
}

func (t *Trust) checkRevocation(r *Result, registeredAt time.Time) {
	type item struct {
		s    *Signer
		role crl.Role
	}
	var checked int
	for _, it := range []item{{r.Image, crl.RoleImage}, {r.Creator, crl.RoleCreator}, {r.Approver, crl.RoleApprover}} {
		if it.s == nil || len(it.s.Chain) == 0 {
			continue
		}
		checked++
		rev, err := t.checkChain(it.s.Chain[0], it.role, registeredAt)
		if err != nil {
			r.Checks = append(r.Checks, Check{Name: CheckRevocation, Reason: ReasonRevocationUnknown, Detail: err.Error()})
			return
		}
		if rev != nil {
			r.Revocation = rev
			r.Checks = append(r.Checks, Check{Name: CheckRevocation, Reason: ReasonRevoked, Detail: rev.String()})
			return
		}
	}
	if checked == 0 {
		r.Checks = append(r.Checks, Check{Name: CheckRevocation, Skipped: true, Reason: ReasonPrerequisiteMissing})
		return
	}
	r.Checks = append(r.Checks, Check{Name: CheckRevocation, OK: true, Detail: fmt.Sprintf("no revoked certificate in %d chains (%s)", checked, t.crlsLoaded())})
}

func (t *Trust) checkImage(r *Result, in Input) {
	if in.Image == nil {
		r.Checks = append(r.Checks, Check{Name: CheckImage, Skipped: true, Reason: ReasonNotChecked, Detail: "no image bytes given"})
		return
	}
	if r.Descriptor == nil {
		r.Checks = append(r.Checks, Check{Name: CheckImage, Skipped: true, Reason: ReasonPrerequisiteMissing})
		return
	}
	if err := CheckImageBytes(in.Image, r.Descriptor.Size, r.Descriptor.SHA512); err != nil {
		var vf *VerificationFailure
		reason := ReasonImageUnreadable
		if errors.As(err, &vf) && len(vf.Reasons) > 0 {
			reason = vf.Reasons[0]
		}
		detail := err.Error()
		if vf != nil && vf.Unwrap() != nil {
			detail = vf.Unwrap().Error()
		}
		r.Checks = append(r.Checks, Check{Name: CheckImage, Reason: reason, Detail: detail})
		return
	}
	r.Checks = append(r.Checks, Check{Name: CheckImage, OK: true, Detail: fmt.Sprintf("%d bytes, sha512 matches", r.Descriptor.Size)})
}

func describeSigner(role string, s *cms.Signer) *Signer {
	if s == nil {
		return nil
	}
	c := s.Certificate
	return &Signer{
		Role: role, Certificate: c,
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: fmt.Sprintf("%x", c.SerialNumber),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SigningTime: s.SigningTime,
		Algorithm: s.SignatureAlgorithm.String(),
	}
}

// imageUUIDs returns the urn:uuid: URIs of a certificate's subjectAltName.
func imageUUIDs(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		s := u.String()
		if strings.HasPrefix(strings.ToLower(s), "urn:uuid:") {
			out = append(out, s[len("urn:uuid:"):])
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}
