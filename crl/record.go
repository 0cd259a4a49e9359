package crl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Catalogue property names the CRL job reads and writes (docs/design.md).
const (
	PropRecordVersion  = "imagetrust_record_version"
	PropChain          = "imagetrust_chain"
	PropNotBefore      = "imagetrust_image_not_before"
	PropAlias          = "imagetrust_alias"
	PropGlobalValidity = "imagetrust_global_validity"
	PropLocalValidity  = "imagetrust_local_validity"
	PropRevReason      = "imagetrust_revocation_reason"
	PropRevDate        = "imagetrust_revocation_date"
	PropRevCRLNumber   = "imagetrust_revocation_crl_number"
	PropRevokedRole    = "imagetrust_revoked_role"
	// PropRevSerial is the serial (hex) of the revoked or held certificate.
	PropRevSerial = "imagetrust_revocation_serial"
	// PropRevCRLScope names the CA (key and name) and the scope
	// (issuingDistributionPoint) of the CRL that said so (CRLScopeID), and
	// PropRevCRLThisUpdate is its thisUpdate: a hold is lifted only by a
	// newer CRL of the same CA that speaks for the certificate.
	PropRevCRLScope      = "imagetrust_revocation_crl_scope"
	PropRevCRLThisUpdate = "imagetrust_revocation_crl_this_update"
	// PropDeactivatedBy marks an image the job deactivated for a
	// certificateHold ("crl-hold"): the only images it ever reactivates.
	// The sync writes "sync-uuid-squat" on an image it deactivated as a
	// squat of another VO's bound uuid (glancesync.DeactivatedBySquat),
	// which the job therefore never reactivates.
	PropDeactivatedBy = "imagetrust_deactivated_by"
)

// JudgedProperties are the record properties of an image that a run's
// judgement of it reads, besides the job's own (imagetrust_global_validity
// and the revocation details it wrote): imagetrust_record_version (without
// it the image is no record and is skipped: isRecord), imagetrust_chain and
// imagetrust_image_not_before (the certificates and registration time
// checked against the CRLs: RecordRefs), and imagetrust_signature (whose
// chains must still lead to the configured trust: ChainChecker; whose
// embedded CAs name the CRLs the run accepts: EmbeddedCAs).
// imagetrust_alias is no record property (an alias is never judged). No
// other property of a record changes a run's verdict on it, so a verdict
// given while only others were edited or unset holds for the record with
// them restored: the sync's record repair keeps a valid flag then, and
// removes it when one of these was (glancesync, repairRecord).
var JudgedProperties = []string{PropRecordVersion, PropChain, PropNotBefore, PropSignature}

// Values of imagetrust_global_validity.
const (
	StateValid   = "valid"
	StateRevoked = "revoked"
	StateHold    = "hold"
	StateUnknown = "unknown"
)

// DeactivatedByHold is the value of PropDeactivatedBy the job writes.
const DeactivatedByHold = "crl-hold"

// ChainCert is one element of the imagetrust_chain property.
type ChainCert struct {
	Role   string `json:"role"`
	Issuer string `json:"issuer"`
	Serial string `json:"serial"`
	AKI    string `json:"aki,omitempty"`
}

// RecordRefs reads an image record's imagetrust_chain and registration time
// (imagetrust_image_not_before) into references for Index.Check.
//
// Roles: "image", "creator" and "approver" are those roles; any role ending
// in "ca" ("creator-ca", "image-ca", "ca" ...) is RoleCA; any other role is
// read as RoleImage, to which every revocation applies.
func RecordRefs(props map[string]string) ([]Ref, time.Time, error) {
	reg, err := time.Parse(time.RFC3339, props[PropNotBefore])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record: %s: %w", PropNotBefore, err)
	}
	var chain []ChainCert
	if err := json.Unmarshal([]byte(props[PropChain]), &chain); err != nil {
		return nil, time.Time{}, fmt.Errorf("record: %s: %w", PropChain, err)
	}
	if len(chain) == 0 {
		return nil, time.Time{}, fmt.Errorf("record: %s is empty", PropChain)
	}
	refs := make([]Ref, 0, len(chain))
	for i, c := range chain {
		serial, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok || c.Issuer == "" || c.Serial != strings.ToLower(c.Serial) {
			return nil, time.Time{}, fmt.Errorf("record: %s[%d]: bad issuer or serial", PropChain, i)
		}
		aki, err := hex.DecodeString(c.AKI)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("record: %s[%d]: aki: %w", PropChain, i, err)
		}
		refs = append(refs, Ref{Role: recordRole(c.Role), Issuer: c.Issuer, Serial: serial, AKI: aki})
	}
	// the issuer's issuer and key, where the next entry is the issuer
	// (a "<role>-ca" after "<role>" or another "<role>-ca"), as ChainRefs
	// gives them: Covering takes in a re-keyed issuer's CRL by them
	for i := 0; i+1 < len(chain); i++ {
		base := strings.TrimSuffix(chain[i].Role, "-ca")
		if chain[i+1].Role != base+"-ca" {
			continue
		}
		refs[i].IssuerIssuer = chain[i+1].Issuer
		refs[i].IssuerAKI = refs[i+1].AKI
	}
	return refs, reg, nil
}

func recordRole(r string) Role {
	switch {
	case r == string(RoleImage), r == string(RoleCreator), r == string(RoleApprover):
		return Role(r)
	case strings.HasSuffix(r, "ca"):
		return RoleCA
	}
	return RoleImage
}
