package validator

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
)

// A Trust is the CRL job's chain checker: the job judges the catalogue's
// records against the verifier's own trust and chain rules.
var _ crl.ChainChecker = (*Trust)(nil)

// CheckRecordChains reports why the chains of a catalogue record's
// imagetrust_signature no longer lead to t's trust anchors, or nil when
// they do (crl.ChainChecker). It asks what Verify asks of the same
// signature's chains (checks "registrar", "creator" and "approver", their
// chain part), with Verify's own code (verifyRegistrar, verifyPerson), and
// nothing else:
//
//   - the signer whose certificate names a urn:uuid: (the image
//     certificate) chains, through the certificates the signature embeds
//     and the configured Registrar intermediates, to a configured
//     Registrar root, at its own notBefore (the registration time),
//     through no people CA's key;
//   - every other signer (the creator and the approver) chains, through
//     the embedded certificates and the configured people intermediates,
//     to a configured people root at the registration time, or, when that
//     fails on time alone, within its own validity (being valid at
//     registration is another check);
//   - a chain holding a CA key weaker than the signers' minimum
//     (cms.CheckPublicKey) does not count.
//
// The answer depends only on the record's imagetrust_signature (and, for
// naming a signer's role in the message, imagetrust_chain) and t: each
// certificate is judged at a time the record fixes, so the CRL job
// remembers it. What Verify checks besides (the signatures themselves, the
// VO's lists, IGTF namespaces, expiry, revocation, that the properties
// match the signed record) is not judged here: the proxy still refuses
// such images at boot.
func (t *Trust) CheckRecordChains(props map[string]string) error {
	s := props[PropSignature]
	if s == "" {
		return fmt.Errorf("record has no %s: its chains cannot be checked against the configured CAs", PropSignature)
	}
	if len(s) > maxRecordSignatureB64 {
		return fmt.Errorf("record %s is larger than %d bytes", PropSignature, maxRecordSignatureB64)
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("record %s: %w", PropSignature, err)
	}
	sd, err := cms.Parse(der)
	if err != nil {
		return fmt.Errorf("record %s: %w", PropSignature, err)
	}
	// signers classified as Verify classifies them
	var img *x509.Certificate
	var people []*x509.Certificate
	for i := range sd.Signers {
		c := sd.Signers[i].Certificate
		if imageUUIDs(c) != nil {
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
	inter := &interPools{t: t, embedded: sd.Certificates}
	if _, err := t.verifyRegistrar(img, inter); err != nil {
		return fmt.Errorf("image chain no longer leads to a configured Registrar CA: %w", explainChain(img, err, sd.Certificates, t.regInterCerts))
	}
	roles := chainRoles(props[PropChain])
	for _, c := range people {
		role := roles[c.Issuer.String()+"\x00"+serialHex(c)]
		if role == "" {
			role = "creator or approver"
		}
		if _, _, err := t.verifyPerson(c, inter, img.NotBefore); err != nil {
			return fmt.Errorf("%s chain no longer leads to a configured people CA: %w", role, explainChain(c, err, sd.Certificates, t.peopleInterCerts))
		}
	}
	return nil
}

// AnchorCounts returns how many people CAs (trust.ca_files, trust.ca_dirs)
// and Registrar CAs (trust.registrar_ca_files) t holds, roots and
// intermediates (crl.ChainChecker): with none on one side no record's
// chains can lead to t, and the CRL job refuses to run (crl.ErrNoTrust).
func (t *Trust) AnchorCounts() (people, registrar int) {
	return len(t.people), len(t.registrar)
}

// chainRoles maps the creator and approver of imagetrust_chain, by issuer
// (as pkix.Name.String prints it) and serial (hex), to their roles: only
// to name a signer's role in CheckRecordChains' messages.
func chainRoles(chain string) map[string]string {
	var cc []ChainEntry
	if json.Unmarshal([]byte(chain), &cc) != nil {
		return nil
	}
	out := map[string]string{}
	for _, c := range cc {
		if c.Role == string(crl.RoleCreator) || c.Role == string(crl.RoleApprover) {
			out[c.Issuer+"\x00"+c.Serial] = c.Role
		}
	}
	return out
}

// explainChain words the error of a chain that does not verify: for a
// missing anchor, the issuer at the top of what the signature's and the
// configured intermediates can build ("issuer X is not trusted"), which is
// the CA an operator removed or never configured.
func explainChain(c *x509.Certificate, err error, certs ...[]*x509.Certificate) error {
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		return fmt.Errorf("certificate %q (serial %x): %w", SubjectName(c), c.SerialNumber, err)
	}
	top := c
	for range 16 {
		if isSelfSigned(top) {
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
	return fmt.Errorf("issuer %q is not trusted (certificate %q, serial %x)", IssuerName(top), SubjectName(c), c.SerialNumber)
}
