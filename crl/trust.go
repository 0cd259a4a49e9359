package crl

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
)

// ErrNoTrust is the error of NewAnchors (and of Job.Run with an Anchors
// that holds none) when one side of the trust is empty: no image's chains
// can then lead to it, and the job would flip the whole catalogue to
// "unknown" because of a configuration mistake (an emptied file, a wiped
// directory). The job refuses to run instead.
var ErrNoTrust = errors.New("the trust configuration trusts no image")

// Anchors are the trust anchors every record's chains must lead to, as the
// verifier holds them (validator.Trust, which the proxy boots images
// against): the people CAs, to which creators and approvers chain, and the
// Registrar CAs, to which image certificates chain. Self-signed ones are
// roots, the others intermediates a chain may pass through (as
// validator.NewTrust sorts them). Build it with NewAnchors; it is
// immutable and safe for concurrent use.
type Anchors struct {
	peopleRoots, peopleInter []*x509.Certificate
	regRoots, regInter       []*x509.Certificate
	// the root pools, built once (x509.CertPool is safe for concurrent
	// reads)
	peoplePool, regPool *x509.CertPool
	// peopleKeys are the keys of every people CA: no image certificate's
	// chain may pass through one (validator.throughPeopleCA)
	peopleKeys map[string]bool
	// sum identifies the set (for the job's memo of verdicts)
	sum [32]byte
}

// NewAnchors returns the anchors of the people and Registrar CA
// certificates given (validator.Trust.Anchors: trust.ca_files and
// trust.ca_dirs, trust.registrar_ca_files). It refuses (ErrNoTrust) a side
// that holds no certificate, and a certificate that is not a CA.
func NewAnchors(people, registrar []*x509.Certificate) (*Anchors, error) {
	switch {
	case len(people) == 0 && len(registrar) == 0:
		return nil, fmt.Errorf("%w: no people CA and no Registrar CA", ErrNoTrust)
	case len(people) == 0:
		return nil, fmt.Errorf("%w: no people CA (trust.ca_files, trust.ca_dirs): no creator or approver can chain to one", ErrNoTrust)
	case len(registrar) == 0:
		return nil, fmt.Errorf("%w: no Registrar CA (trust.registrar_ca_files): no image certificate can chain to one", ErrNoTrust)
	}
	a := &Anchors{peopleKeys: map[string]bool{}}
	h := sha256.New()
	for _, side := range []struct {
		certs       []*x509.Certificate
		roots, mids *[]*x509.Certificate
		name        string
	}{{people, &a.peopleRoots, &a.peopleInter, "people"}, {registrar, &a.regRoots, &a.regInter, "registrar"}} {
		h.Write([]byte(side.name))
		for _, c := range side.certs {
			if !c.IsCA {
				return nil, fmt.Errorf("%s CA %q is not a CA certificate", side.name, c.Subject)
			}
			if side.name == "people" {
				a.peopleKeys[string(c.RawSubjectPublicKeyInfo)] = true
			}
			if selfSigned(c) {
				*side.roots = append(*side.roots, c)
			} else {
				*side.mids = append(*side.mids, c)
			}
			s := sha256.Sum256(c.Raw)
			h.Write(s[:])
		}
	}
	copy(a.sum[:], h.Sum(nil))
	a.peoplePool, a.regPool = pool(a.peopleRoots), pool(a.regRoots)
	return a, nil
}

// counts returns how many people and Registrar CAs a holds.
func (a *Anchors) counts() (people, registrar int) {
	if a == nil {
		return 0, 0
	}
	return len(a.peopleRoots) + len(a.peopleInter), len(a.regRoots) + len(a.regInter)
}

// selfSigned is validator.isSelfSigned: issued by itself and signed with
// its own key (CheckSignature accepts the SHA-1 of old roots).
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// CheckRecord reports why the chains of an image record no longer lead to
// a, or nil when they do. It asks what the verifier asks of the same
// record (validator.Trust.Verify, checks "registrar", "creator" and
// "approver", their chain part) and nothing else:
//
//   - the signer of imagetrust_signature whose certificate names a
//     urn:uuid: (the image certificate) chains, through the certificates
//     the signature embeds and the configured Registrar intermediates, to
//     a configured Registrar root, at its own notBefore (the registration
//     time), through no people CA's key;
//   - every other signer (the creator and the approver) chains, through
//     the embedded certificates and the configured people intermediates,
//     to a configured people root at the registration time, or, when that
//     fails on time alone, within its own validity (being valid at
//     registration is another check);
//   - a chain holding a CA key weaker than the signers' minimum
//     (cms.CheckPublicKey) does not count.
//
// The answer depends only on the record's bytes and a (each certificate is
// judged at a time the record fixes), so it can be remembered. What the
// verifier checks besides (the signatures themselves, the VO's lists, IGTF
// namespaces, expiry, that the properties match the signed record) is not
// judged here: the proxy still refuses such images at boot, whatever the
// flag.
func (a *Anchors) CheckRecord(props map[string]string) error {
	s := props[PropSignature]
	if s == "" {
		return fmt.Errorf("record has no %s: its chains cannot be checked against the configured CAs", PropSignature)
	}
	if len(s) > maxSignatureB64 {
		return fmt.Errorf("record %s is larger than %d bytes", PropSignature, maxSignatureB64)
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("record %s: %w", PropSignature, err)
	}
	sd, err := cms.Parse(der)
	if err != nil {
		return fmt.Errorf("record %s: %w", PropSignature, err)
	}
	var img *x509.Certificate
	var people []*x509.Certificate
	for i := range sd.Signers {
		c := sd.Signers[i].Certificate
		if len(imageURIs(c)) > 0 {
			if img == nil {
				img = c
			}
			continue
		}
		people = append(people, c)
	}
	if img == nil {
		return errors.New("image chain: no signer of the record holds an image certificate (subjectAltName urn:uuid:)")
	}
	if err := a.registrarChain(img, sd.Certificates); err != nil {
		return fmt.Errorf("image chain no longer leads to a configured Registrar CA: %w", err)
	}
	roles := chainRoles(props[PropChain])
	for _, c := range people {
		role := roles[c.Issuer.String()+"\x00"+c.SerialNumber.Text(16)]
		if role == "" {
			role = "creator or approver"
		}
		if err := a.peopleChain(c, sd.Certificates, img.NotBefore); err != nil {
			return fmt.Errorf("%s chain no longer leads to a configured people CA: %w", role, err)
		}
	}
	return nil
}

// chainRoles maps the creator and approver of imagetrust_chain, by issuer
// (as pkix.Name.String prints it) and serial (hex), to their roles: only
// to name a signer's role in messages.
func chainRoles(chain string) map[string]string {
	var cc []ChainCert
	if json.Unmarshal([]byte(chain), &cc) != nil {
		return nil
	}
	out := map[string]string{}
	for _, c := range cc {
		if c.Role == string(RoleCreator) || c.Role == string(RoleApprover) {
			out[c.Issuer+"\x00"+c.Serial] = c.Role
		}
	}
	return out
}

// registrarChain is validator.Trust.verifyRegistrar's chain question.
func (a *Anchors) registrarChain(c *x509.Certificate, embedded []*x509.Certificate) error {
	inter := pool(embedded, a.regInter)
	chains, err := strong(c.Verify(x509.VerifyOptions{Roots: a.regPool, Intermediates: inter, CurrentTime: c.NotBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}))
	if err == nil {
		chains = slices.DeleteFunc(chains, func(ch []*x509.Certificate) bool {
			for _, ca := range ch[1:] {
				if a.peopleKeys[string(ca.RawSubjectPublicKeyInfo)] {
					return true
				}
			}
			return false
		})
		if len(chains) == 0 {
			err = errors.New("its only chains to a Registrar root pass through a people CA")
		}
	}
	if err != nil {
		return explain(c, err, embedded, a.regInter)
	}
	return nil
}

// peopleChain is validator.Trust.verifyPeople as judgePerson uses it.
func (a *Anchors) peopleChain(c *x509.Certificate, embedded []*x509.Certificate, regTime time.Time) error {
	roots, inter := a.peoplePool, pool(embedded, a.peopleInter)
	verify := func(at time.Time) error {
		_, err := strong(c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}))
		return err
	}
	err := verify(regTime)
	var inv x509.CertificateInvalidError
	if err != nil && errors.As(err, &inv) && inv.Reason == x509.Expired {
		err = verify(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2))
	}
	if err != nil {
		return explain(c, err, embedded, a.peopleInter)
	}
	return nil
}

// explain words a chain that does not verify: for a missing anchor, the
// issuer at the top of what the record and the configured intermediates
// can build ("issuer X is not trusted").
func explain(c *x509.Certificate, err error, certs ...[]*x509.Certificate) error {
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		return fmt.Errorf("certificate %q (serial %x): %w", c.Subject, c.SerialNumber, err)
	}
	top := c
	for range 16 {
		if selfSigned(top) {
			break
		}
		var up *x509.Certificate
		for _, cs := range certs {
			for _, p := range cs {
				if p != top && bytes.Equal(p.RawSubject, top.RawIssuer) && top.CheckSignatureFrom(p) == nil {
					up = p
					break
				}
			}
			if up != nil {
				break
			}
		}
		if up == nil {
			break
		}
		top = up
	}
	return fmt.Errorf("issuer %q is not trusted (certificate %q, serial %x)", top.Issuer, c.Subject, c.SerialNumber)
}

// strong is validator.strongChains: chains holding a weak CA key do not
// count.
func strong(chains [][]*x509.Certificate, err error) ([][]*x509.Certificate, error) {
	if err != nil {
		return nil, err
	}
	var weak error
	chains = slices.DeleteFunc(chains, func(ch []*x509.Certificate) bool {
		for _, c := range ch[1:] {
			if e := cms.CheckPublicKey(c.PublicKey); e != nil {
				weak = fmt.Errorf("CA %q: %w", c.Subject, e)
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

func pool(sets ...[]*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, s := range sets {
		for _, c := range s {
			p.AddCert(c)
		}
	}
	return p
}

// imageURIs are the urn:uuid: URIs of c (validator.imageUUIDs).
func imageURIs(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(strings.ToLower(s), "urn:uuid:") {
			out = append(out, s)
		}
	}
	return out
}

// MassUntrustedPercent is the share of the catalogue's images (percent)
// above which a run that turns images unknown for want of trust warns
// (Report.Warnings, the log): a CA removed from [trust] by mistake shows at
// once, with the count; one removed on purpose does the same, once.
const MassUntrustedPercent = 10

// trustMemo remembers, by the SHA-256 of a record's imagetrust_signature
// and imagetrust_chain, why CheckRecord refused it ("" when it did not),
// from one run of a Job to the next: the verdict depends only on those
// bytes and the anchors (see CheckRecord), and the anchors of a Job do not
// change (a reload builds a new Job). A run keeps only its records'
// verdicts, at most maxSigMemo.
type trustMemo struct {
	anchors  [32]byte
	prev     map[[32]byte]string
	cur      map[[32]byte]string
	computed int // CheckRecord calls of the last run (tests)
}

// begin starts a run over a (nil: no check) and returns its judge: why a
// record's chains no longer lead to a, or "".
func (t *trustMemo) begin(a *Anchors) func(props map[string]string) string {
	t.computed = 0
	if a == nil {
		t.prev, t.cur = nil, nil
		return func(map[string]string) string { return "" }
	}
	if a.sum != t.anchors {
		t.prev, t.anchors = nil, a.sum
	}
	prev, cur := t.prev, map[[32]byte]string{}
	t.cur = cur
	return func(props map[string]string) string {
		sig, chain := props[PropSignature], props[PropChain]
		h := sha256.New()
		var n [8]byte
		for i, l := 0, uint64(len(sig)); i < 8; i++ {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(sig))
		h.Write([]byte(chain))
		var key [32]byte
		copy(key[:], h.Sum(nil))
		if v, ok := cur[key]; ok {
			return v
		}
		v, ok := prev[key]
		if !ok {
			t.computed++
			if err := a.CheckRecord(props); err != nil {
				v = err.Error()
			}
		}
		if len(cur) < maxSigMemo {
			cur[key] = v
		}
		return v
	}
}

// end keeps this run's verdicts for the next.
func (t *trustMemo) end() { t.prev, t.cur = t.cur, nil }
