package validator

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Catalogue record property names (docs/catalogue.md lists them all).
const (
	PropPrefix            = "imagetrust_"
	PropRecordVersion     = "imagetrust_record_version"
	PropUUID              = "imagetrust_uuid"
	PropVO                = "imagetrust_vo"
	PropTag               = "imagetrust_tag"
	PropURI               = "imagetrust_uri"
	PropCreated           = "imagetrust_created"
	PropSHA512            = "imagetrust_sha512"
	PropSize              = "imagetrust_size"
	PropImageSerial       = "imagetrust_image_serial"
	PropImageIssuer       = "imagetrust_image_issuer"
	PropImageNotBefore    = "imagetrust_image_not_before"
	PropImageNotAfter     = "imagetrust_image_not_after"
	PropImageFingerprint  = "imagetrust_image_fingerprint"
	PropCreatorSubject    = "imagetrust_creator_subject"
	PropCreatorIssuer     = "imagetrust_creator_issuer"
	PropCreatorSerial     = "imagetrust_creator_serial"
	PropApproverSubject   = "imagetrust_approver_subject"
	PropApproverIssuer    = "imagetrust_approver_issuer"
	PropApproverSerial    = "imagetrust_approver_serial"
	PropChain             = "imagetrust_chain"
	PropDescriptor        = "imagetrust_descriptor"
	PropSignature         = "imagetrust_signature"
	PropGlobalValidity    = "imagetrust_global_validity"
	PropLocalValidity     = "imagetrust_local_validity"
	PropRevocationReason  = "imagetrust_revocation_reason"
	PropRevocationDate    = "imagetrust_revocation_date"
	PropRevocationCRLNum  = "imagetrust_revocation_crl_number"
	PropRevokedRole       = "imagetrust_revoked_role"
	PropAlias             = "imagetrust_alias"
	RecordVersion         = "1"
	GlobalValid           = "valid"
	GlobalRevoked         = "revoked"
	GlobalHold            = "hold"
	GlobalUnknown         = "unknown"
	LocalBlacklist        = "blacklist"
	LocalRunAnyway        = "run-anyway"
	recordTimeFormat      = time.RFC3339
	maxRecordSignatureB64 = 1 << 20
)

// LocalBlocks reports whether a local validity flag keeps its image from
// booting: blacklist, and any value the gate cannot read (a typo must not
// leave an image the operators meant to stop bootable). Unset and
// run-anyway do not.
func LocalBlocks(local string) bool { return local != "" && local != LocalRunAnyway }

// signedProps are the record properties derived from the signed bundle; the
// proxy recomputes them and refuses a record where any differs.
var signedProps = []string{
	PropUUID, PropVO, PropTag, PropURI, PropCreated, PropSHA512, PropSize,
	PropImageSerial, PropImageIssuer, PropImageNotBefore, PropImageNotAfter, PropImageFingerprint,
	PropCreatorSubject, PropCreatorIssuer, PropCreatorSerial,
	PropApproverSubject, PropApproverIssuer, PropApproverSerial, PropChain,
}

// ChainEntry is one certificate of an image's chains, for CRL matching.
type ChainEntry struct {
	Role   string `json:"role"`
	Issuer string `json:"issuer"`
	Serial string `json:"serial"`
	AKI    string `json:"aki,omitempty"`
}

// RecordProperties returns the catalogue record of a verified bundle: every
// property derived from the signed bytes, the bytes themselves, and
// imagetrust_global_validity=valid. It never sets imagetrust_local_validity.
func RecordProperties(r *Result, descriptor, signature []byte) (map[string]string, error) {
	if r.Descriptor == nil || r.Image == nil || r.Creator == nil || r.Approver == nil {
		return nil, fmt.Errorf("record: the bundle is not fully verified")
	}
	p := derivedProperties(r)
	p[PropRecordVersion] = RecordVersion
	p[PropDescriptor] = base64.StdEncoding.EncodeToString(descriptor)
	p[PropSignature] = base64.StdEncoding.EncodeToString(signature)
	p[PropGlobalValidity] = GlobalValid
	return p, nil
}

func derivedProperties(r *Result) map[string]string {
	d := r.Descriptor
	ic := r.Image.Certificate
	p := map[string]string{
		PropUUID: d.UUID, PropVO: d.VO, PropTag: d.Tag, PropURI: d.URI, PropCreated: d.CreatedTime.UTC().Format(recordTimeFormat),
		PropSHA512: d.SHA512, PropSize: strconv.FormatInt(d.Size, 10),
		PropImageSerial: serialHex(ic), PropImageIssuer: ic.Issuer.String(),
		PropImageNotBefore:   ic.NotBefore.UTC().Format(recordTimeFormat),
		PropImageNotAfter:    ic.NotAfter.UTC().Format(recordTimeFormat),
		PropImageFingerprint: Fingerprint(ic),
		PropCreatorSubject:   r.Creator.Certificate.Subject.String(),
		PropCreatorIssuer:    r.Creator.Certificate.Issuer.String(),
		PropCreatorSerial:    serialHex(r.Creator.Certificate),
		PropApproverSubject:  r.Approver.Certificate.Subject.String(),
		PropApproverIssuer:   r.Approver.Certificate.Issuer.String(),
		PropApproverSerial:   serialHex(r.Approver.Certificate),
	}
	var chain []ChainEntry
	for _, s := range []*Signer{r.Image, r.Creator, r.Approver} {
		if len(s.Chain) == 0 {
			continue
		}
		ch := s.Chain[0]
		for i, c := range ch {
			if i == len(ch)-1 && len(ch) > 1 {
				break // the trust anchor itself
			}
			role := s.Role
			if i > 0 {
				role = s.Role + "-ca"
			}
			chain = append(chain, ChainEntry{Role: role, Issuer: c.Issuer.String(), Serial: serialHex(c), AKI: hex.EncodeToString(c.AuthorityKeyId)})
		}
	}
	b, _ := json.Marshal(chain)
	p[PropChain] = string(b)
	return p
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// RecordBundle extracts the stored descriptor and signature of a record.
func RecordBundle(props map[string]string) (descriptor, signature []byte, err error) {
	ds, ss := props[PropDescriptor], props[PropSignature]
	if ds == "" || ss == "" {
		return nil, nil, fmt.Errorf("record has no %s/%s", PropDescriptor, PropSignature)
	}
	if len(ds) > maxRecordSignatureB64 || len(ss) > maxRecordSignatureB64 {
		return nil, nil, fmt.Errorf("record bundle too large")
	}
	if descriptor, err = base64.StdEncoding.DecodeString(ds); err != nil {
		return nil, nil, fmt.Errorf("record %s: %w", PropDescriptor, err)
	}
	if signature, err = base64.StdEncoding.DecodeString(ss); err != nil {
		return nil, nil, fmt.Errorf("record %s: %w", PropSignature, err)
	}
	return descriptor, signature, nil
}
