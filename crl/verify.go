package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
)

// CRL extensions imagetrust understands.
var (
	oidExtAKI          = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtCRLNumber    = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtDeltaCRL     = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidExtIDP          = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidExtIssuerAltNam = asn1.ObjectIdentifier{2, 5, 29, 18}
	oidExtFreshestCRL  = asn1.ObjectIdentifier{2, 5, 29, 46}
)

// Verify checks that ca issued and signed rl, and that imagetrust can read
// rl as a complete CRL of ca. In order, with the reason of the *Error it
// returns:
//
//   - rl's issuer DN is ca's subject DN (SameName: RFC 5280 7.1, so
//     whatever string type or case each encodes it in), and when both carry key
//     identifiers, rl's authorityKeyIdentifier equals ca's
//     subjectKeyIdentifier: ReasonWrongIssuer;
//   - ca is a CA and, if it has a key usage, that includes cRLSign:
//     ReasonNotCRLSigner;
//   - the signature verifies with ca's key: ReasonSignature;
//   - rl is not a delta CRL: ReasonDelta;
//   - rl has no critical extension but the CRL number, the authority key
//     identifier and an issuingDistributionPoint that neither partitions by
//     reasons nor is indirect: ReasonUnsupported.
//
// Dates and CRL numbers are the caller's business (see Index.AddList).
func Verify(rl *x509.RevocationList, ca *x509.Certificate) error {
	if rl == nil {
		return refuse(ReasonParse, "", "no CRL")
	}
	if ca == nil {
		return wrapf(ReasonWrongIssuer, rl, "%w", errNoCA)
	}
	if !SameName(rl.RawIssuer, ca.RawSubject) {
		return wrapf(ReasonWrongIssuer, rl, "issuer is not %q", ca.Subject.String())
	}
	if len(rl.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, ca.SubjectKeyId) {
		return wrapf(ReasonWrongIssuer, rl, "authority key identifier %x is not the CA's %x", rl.AuthorityKeyId, ca.SubjectKeyId)
	}
	if !ca.IsCA || (ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCRLSign == 0) {
		return wrapf(ReasonNotCRLSigner, rl, "%q may not sign CRLs", ca.Subject.String())
	}
	if err := rl.CheckSignatureFrom(ca); err != nil {
		return &Error{Reason: ReasonSignature, Issuer: issuerName(rl), Err: err}
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidExtDeltaCRL):
			return wrapf(ReasonDelta, rl, "delta CRL: imagetrust reads complete CRLs only")
		case ext.Id.Equal(oidExtIDP):
			if reason, err := checkIDP(ext.Value); err != nil {
				return &Error{Reason: reason, Issuer: issuerName(rl), Err: err}
			}
		case ext.Id.Equal(oidExtAKI), ext.Id.Equal(oidExtCRLNumber),
			ext.Id.Equal(oidExtIssuerAltNam), ext.Id.Equal(oidExtFreshestCRL):
		default:
			if ext.Critical {
				return wrapf(ReasonUnsupported, rl, "unknown critical extension %s", ext.Id)
			}
		}
	}
	return nil
}

// idpOnly reads the onlyContainsUserCerts [1] and onlyContainsCACerts [2]
// flags of an issuingDistributionPoint value (checkIDP has accepted it, so
// not both; nil: none).
func idpOnly(v []byte) (user, ca bool) {
	c, _, _, ok := expect(v, tagSequence)
	for ok && len(c) > 0 {
		var tag byte
		var content []byte
		tag, content, _, c, ok = element(c)
		if ok && len(content) == 1 && content[0] != 0 {
			switch tag {
			case 0x81:
				user = true
			case 0x82:
				ca = true
			}
		}
	}
	return user, ca
}

// idpNamesPoint reports whether an issuingDistributionPoint value names a
// distribution point ([0]).
func idpNamesPoint(v []byte) bool {
	c, _, _, ok := expect(v, tagSequence)
	return ok && peek(c, 0xa0)
}

// idpURIs returns the uniformResourceIdentifier names ([6] IA5String,
// their bytes as they are) of the fullName ([0]) of an
// issuingDistributionPoint value's distributionPoint ([0]), as
// crypto/x509 reads a certificate's cRLDistributionPoints: other
// GeneralName forms, and a nameRelativeToCRLIssuer ([1]), give none.
// Malformed DER gives what was read before it (CRL values are untrusted
// bytes: never a panic; FuzzIDPURIs).
func idpURIs(v []byte) []string {
	c, _, _, ok := expect(v, tagSequence)
	if !ok {
		return nil
	}
	dp, _, _, ok := expect(c, tagExplicit0)
	if !ok {
		return nil
	}
	names, _, _, ok := expect(dp, tagExplicit0)
	if !ok {
		return nil
	}
	var out []string
	for len(names) > 0 {
		tag, content, _, rest, ok := element(names)
		if !ok {
			break
		}
		if tag == 0x86 {
			out = append(out, string(content))
		}
		names = rest
	}
	return out
}

// checkIDP refuses issuingDistributionPoint forms that make a CRL partial:
// onlySomeReasons [3], indirectCRL [4] and onlyContainsAttributeCerts [5].
func checkIDP(v []byte) (string, error) {
	c, _, rest, ok := expect(v, tagSequence)
	if !ok || len(rest) != 0 {
		return ReasonParse, errors.New("malformed issuingDistributionPoint")
	}
	for len(c) > 0 {
		tag, _, _, r, ok := element(c)
		if !ok {
			return ReasonParse, errors.New("malformed issuingDistributionPoint")
		}
		switch tag & 0x1f {
		case 1, 2:
			if user, ca := idpOnly(v); user && ca {
				return ReasonParse, errors.New("issuingDistributionPoint with both onlyContainsUserCerts and onlyContainsCACerts")
			}
		case 3:
			return ReasonUnsupported, errors.New("issuingDistributionPoint onlySomeReasons: partitioned CRLs are not supported")
		case 4:
			return ReasonUnsupported, errors.New("issuingDistributionPoint indirectCRL: indirect CRLs are not supported")
		case 5:
			return ReasonUnsupported, errors.New("issuingDistributionPoint onlyContainsAttributeCerts")
		}
		c = r
	}
	return "", nil
}
