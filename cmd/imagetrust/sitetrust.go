package main

import (
	"github.com/imagetrust/imagetrust/crl"
	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// loadSiteTrust loads the trust store a daemon decides with
// (validator.LoadTrust) and refuses one with no people CA or no Registrar
// CA (crl.CheckTrust, crl.ErrNoTrust): no image could chain to it, so the
// sync would refuse every bundle and the proxy every boot of a catalogue
// image, a site-wide outage from one editing mistake. The CRL job, the
// sync and the proxy refuse it alike: at start (exit 2) and on reload
// (the previous trust store kept).
func loadSiteTrust(cfg *itconfig.Config) (*validator.Trust, []string, error) {
	t, warnings, err := validator.LoadTrust(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := crl.CheckTrust(t); err != nil {
		return nil, nil, err
	}
	return t, warnings, nil
}
