package main

import (
	"testing"

	"github.com/imagetrust/imagetrust/contextualise"
	"github.com/imagetrust/imagetrust/internal/config"
)

// TestSampleContextVars: the shipped sample configuration supplies every
// site value the shipped fragments use, so `imagetrust proxy` starts with
// both (it checks them at start-up: CheckSiteVars).
func TestSampleContextVars(t *testing.T) {
	cfg, err := config.Load("../../etc/imagetrust.toml")
	if err != nil {
		t.Fatal(err)
	}
	site, err := contextualise.LoadSite("../../etc/contextualise")
	if err != nil {
		t.Fatal(err)
	}
	if err := site.CheckSiteVars(contextualise.Vars{SiteName: cfg.Context.SiteName, Extra: cfg.Context.Vars}); err != nil {
		t.Fatalf("etc/imagetrust.toml with etc/contextualise: %v", err)
	}
	// and uses every variable it sets: the proxy warns of one it does not
	if unused := site.UnusedVars(cfg.Context.Vars); len(unused) > 0 {
		t.Fatalf("etc/imagetrust.toml sets contextualise.vars no fragment of etc/contextualise uses: %v", unused)
	}
}
