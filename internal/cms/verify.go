package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
)

// MinRSABits is the smallest RSA modulus Verify and Sign accept.
const MinRSABits = 2048

// Verify checks this signer's signature over content. With signed attributes
// it checks that messageDigest equals the hash of content, that contentType is
// id-data, and the signature over the DER SET OF signed attributes (RFC 5652
// section 5.4); without, the signature over content itself. It checks no
// certificate chain, validity period or revocation. A failure is a *Error.
func (s *Signer) Verify(content []byte) error {
	if s.Certificate == nil || s.scheme.kind == 0 {
		return fail("signer was not produced by Parse", nil)
	}
	digest := hashOf(s.Hash, content)
	signed := digest
	if s.hasAttrs {
		if !bytes.Equal(s.messageDigest, digest) {
			return fail("message digest mismatch: the content is not what was signed", nil)
		}
		if !s.contentType.Equal(oidData) {
			return fail("contentType attribute "+algName(s.contentType)+" is not id-data", nil)
		}
		signed = hashOf(s.Hash, s.signedAttrs)
	}
	if err := verifySignature(s.Certificate.PublicKey, s.scheme, s.Hash, signed, s.signature); err != nil {
		return err
	}
	return nil
}

func hashOf(h crypto.Hash, b []byte) []byte {
	w := h.New()
	w.Write(b)
	return w.Sum(nil)
}

func verifySignature(pub crypto.PublicKey, sc sigScheme, h crypto.Hash, digest, sig []byte) error {
	switch sc.kind {
	case sigRSAPKCS1, sigRSAPSS:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fail(fmt.Sprintf("RSA signature with a %T key", pub), nil)
		}
		if k.N.BitLen() < MinRSABits {
			return fail(fmt.Sprintf("RSA key of %d bits is below the %d bit minimum", k.N.BitLen(), MinRSABits), nil)
		}
		var err error
		if sc.kind == sigRSAPSS {
			err = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: sc.salt, Hash: h})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, digest, sig)
		}
		if err != nil {
			return fail("signature invalid", err)
		}
	case sigECDSA:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fail(fmt.Sprintf("ECDSA signature with a %T key", pub), nil)
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fail("signature invalid", nil)
		}
	default:
		return fail("unknown signature scheme", nil)
	}
	return nil
}
