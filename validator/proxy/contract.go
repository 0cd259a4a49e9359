package proxy

import "github.com/imagetrust/imagetrust/validator"

// The boot decision is pure and lives in package validator; the gate uses
// its types, so that *validator.Trust is a Decider.
type (
	catalogImage = validator.CatalogImage
	bootPolicy   = validator.BootPolicy
	decision     = validator.Decision
)

const (
	propAlias = validator.PropAlias
	propVO    = validator.PropVO
	propTag   = validator.PropTag

	decisionUnmanaged = validator.DecisionUnmanaged
)
