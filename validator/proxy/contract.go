package proxy

import "time"

// The boot decision is pure and lives in package validator. Until that
// package builds, the gate programs against local copies of its contract;
// these become aliases of validator.CatalogImage, validator.BootPolicy and
// validator.Decision when it does, so that *validator.Trust is a Decider.

type catalogImage struct {
	ID, Owner, Status string
	Properties        map[string]string
}

type bootPolicy struct {
	MirrorProject  string
	AllowUnmanaged bool
}

type decision struct {
	ImageID string
	Allowed bool
	Reasons []string
	Notes   []string
	Message string
	Created time.Time
	VO, Tag string
}

const (
	propAlias = "imagetrust_alias"
	propVO    = "imagetrust_vo"
	propTag   = "imagetrust_tag"
)
