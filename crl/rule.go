package crl

import (
	"strconv"
	"time"
)

// Role is the place of a certificate in an image's three chains.
type Role string

// The roles a revoked certificate can play.
const (
	RoleImage    Role = "image"    // the Registrar-issued image certificate
	RoleCreator  Role = "creator"  // the creator's personal certificate
	RoleApprover Role = "approver" // the approver's personal certificate
	RoleCA       Role = "ca"       // an intermediate CA of any of the chains
)

// RFC 5280 CRLReason codes.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// ReasonName returns the RFC 5280 name of a CRLReason code.
func ReasonName(code int) string {
	switch code {
	case ReasonUnspecified:
		return "unspecified"
	case ReasonKeyCompromise:
		return "keyCompromise"
	case ReasonCACompromise:
		return "cACompromise"
	case ReasonAffiliationChanged:
		return "affiliationChanged"
	case ReasonSuperseded:
		return "superseded"
	case ReasonCessationOfOperation:
		return "cessationOfOperation"
	case ReasonCertificateHold:
		return "certificateHold"
	case ReasonRemoveFromCRL:
		return "removeFromCRL"
	case ReasonPrivilegeWithdrawn:
		return "privilegeWithdrawn"
	case ReasonAACompromise:
		return "aACompromise"
	}
	return "reason-" + strconv.Itoa(code)
}

// RevocationApplies is the one revocation rule of imagetrust, shared by the
// verifier and the CRL job. It says whether a revocation entry of a
// certificate playing role in an image's chains makes the image invalid.
//
//   - The image certificate: any revocation applies.
//   - Compromise (unspecified, keyCompromise, cACompromise, aACompromise) and
//     certificateHold apply whatever the dates: the key can't be trusted.
//   - removeFromCRL never applies: it lifts an earlier certificateHold.
//   - Any other reason (affiliationChanged, superseded, cessationOfOperation,
//     privilegeWithdrawn) applies only to images registered at or after the
//     revocation time; images registered before it stay valid, unless strict.
func RevocationApplies(role Role, reason int, revokedAt, registeredAt time.Time, strict bool) bool {
	if reason == ReasonRemoveFromCRL {
		return false
	}
	if role == RoleImage || strict {
		return true
	}
	switch reason {
	case ReasonUnspecified, ReasonKeyCompromise, ReasonCACompromise, ReasonAACompromise, ReasonCertificateHold:
		return true
	}
	return !registeredAt.Before(revokedAt)
}
