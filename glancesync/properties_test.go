package glancesync

import (
	"context"
	"math/big"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

// vmProps are free-form descriptor properties of every kind: one that
// shapes the guest's virtual hardware (in config.DefaultImageProperties),
// one that pins host CPUs, one that steers placement.
var vmProps = map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "dedicated", "trait:CUSTOM_X": "required"}

// TestAllowedProps: the site's policy (sync.image_properties, replaced by
// a VO's vo.NAME.image_properties; config.DefaultImageProperties when
// neither is set) splits a descriptor's free-form properties into those
// copied into Glance and the names of those kept out, sorted.
func TestAllowedProps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sync    []string
		vo      []string
		allowed map[string]string
		refused []string
	}{
		{name: "ok default: the guest's hardware only", allowed: map[string]string{"hw_disk_bus": "virtio"}, refused: []string{"hw_cpu_policy", "trait:CUSTOM_X"}},
		{name: "ok every property", sync: []string{"*"}, allowed: vmProps},
		{name: "ok none", sync: []string{}, allowed: map[string]string{}, refused: []string{"hw_cpu_policy", "hw_disk_bus", "trait:CUSTOM_X"}},
		{name: "ok glob", sync: []string{"hw_*"}, allowed: map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "dedicated"}, refused: []string{"trait:CUSTOM_X"}},
		{name: "ok the VO's list replaces the site's", sync: []string{"*"}, vo: []string{"trait:*"}, allowed: map[string]string{"trait:CUSTOM_X": "required"}, refused: []string{"hw_cpu_policy", "hw_disk_bus"}},
		{name: "ok the VO's empty list refuses all", sync: []string{"*"}, vo: []string{}, allowed: map[string]string{}, refused: []string{"hw_cpu_policy", "hw_disk_bus", "trait:CUSTOM_X"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Syncer{o: Options{Sync: config.Sync{ImageProperties: tc.sync}, VOs: map[string]config.VO{"atlas": {ImageProperties: tc.vo}}}}
			allowed, refused := s.allowedProps(&validator.Descriptor{VO: "atlas", Properties: vmProps})
			if !reflect.DeepEqual(allowed, tc.allowed) || !reflect.DeepEqual(refused, tc.refused) {
				t.Fatalf("allowed %v refused %q, want %v %q", allowed, refused, tc.allowed, tc.refused)
			}
		})
	}
}

// TestPropDrift: of a mirrored image's properties, only those its own
// descriptor names are compared: a refused one is removed only while it
// has the descriptor's value (another value, or a property the descriptor
// does not name, is an operator's), and an allowed one the image lacks is
// written back.
func TestPropDrift(t *testing.T) {
	s := &Syncer{o: Options{VOs: map[string]config.VO{"atlas": {}}}}
	d := &validator.Descriptor{VO: "atlas", Properties: map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "dedicated", "trait:CUSTOM_X": "required", "hw_vif_model": ""}}
	for _, tc := range []struct {
		name          string
		props         map[string]string
		drop, restore []string
	}{
		{name: "ok as the policy wants", props: map[string]string{"hw_disk_bus": "virtio"}},
		{name: "ok refused ones with the descriptor's values removed", props: map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "dedicated", "trait:CUSTOM_X": "required"},
			drop: []string{"hw_cpu_policy", "trait:CUSTOM_X"}},
		{name: "ok an operator's value kept", props: map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "shared"}},
		{name: "ok an operator's own property kept", props: map[string]string{"hw_disk_bus": "virtio", "hw_mem_page_size": "large", "trait:CUSTOM_Y": "required"}},
		{name: "ok an allowed one missing written back", props: map[string]string{}, restore: []string{"hw_disk_bus"}},
		{name: "ok an allowed one of another value left", props: map[string]string{"hw_disk_bus": "scsi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drop, restore := s.propDrift(&Image{Props: tc.props}, d)
			if !reflect.DeepEqual(drop, tc.drop) || !reflect.DeepEqual(restore, tc.restore) {
				t.Fatalf("drop %q restore %q, want %q %q", drop, restore, tc.drop, tc.restore)
			}
		})
	}
}

// TestFreeFormPropsNotJudged: the boot gate's verdict on a catalogue
// image (validator.Trust.DecideBoot, record-tampered included) and the CRL
// job's (crl.Judge) do not depend on the descriptor's free-form
// properties: an image created under the default policy (without
// hw_cpu_policy and trait:CUSTOM_X) and one created with every property
// are judged alike, valid without CRLs and revoked with the Registrar's
// CRL revoking the image certificate. (No Glance: judging never asks it.)
func TestFreeFormPropsNotJudged(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "props", props: vmProps})
	bundles, _, err := (&DirSource{Root: dir, AllowedVOs: []string{"atlas"}}).List(context.Background())
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listed %d: %v", len(bundles), err)
	}
	narrow, wide := map[string]config.VO{"atlas": {}}, map[string]config.VO{"atlas": {ImageProperties: []string{"*"}}}
	images := map[string]map[string]string{}
	for name, vos := range map[string]map[string]config.VO{"default": narrow, "every": wide} {
		s, err := New(Options{Trust: w.trust(), Glance: &memGlance{}, MirrorProject: "mirror", VOs: vos})
		if err != nil {
			t.Fatal(err)
		}
		it := s.judge(bundles[0], w.now)
		if it.refused != "" {
			t.Fatalf("%s: refused %s: %s", name, it.refused, it.detail)
		}
		images[name] = s.createSpec(it).Props
	}
	if _, ok := images["default"]["hw_cpu_policy"]; ok || images["default"]["hw_disk_bus"] != "virtio" || images["every"]["trait:CUSTOM_X"] != "required" {
		t.Fatalf("the created images' properties do not follow the policy: default %v, every %v", images["default"], images["every"])
	}
	revoking := w.regRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: w.now.Add(-time.Minute), NextUpdate: w.now.Add(24 * time.Hour),
		Entries: []pki.Revoked{{Serial: new(big.Int).Set(p.imageCert.SerialNumber), Time: w.now.Add(-10 * time.Minute), Reason: 1}}})
	for name, props := range images {
		t.Run("ok "+name, func(t *testing.T) {
			d := w.trust().DecideBoot(validator.CatalogImage{ID: p.id, Owner: "mirror", Status: StatusActive, Properties: props}, validator.BootPolicy{MirrorProject: "mirror"}, w.now)
			if !d.Allowed {
				t.Errorf("the gate refuses the image: %v %s", d.Reasons, d.Message)
			}
			img := crl.Image{ID: p.id, Status: crl.StatusActive, Properties: props}
			if state, _, why := crl.Judge(&crl.Index{}, img, crl.Policy{}, w.now); state != crl.StateValid {
				t.Errorf("the CRL job judges it %s (%s) without CRLs, want %s", state, why, crl.StateValid)
			}
			rl, err := crl.Parse(revoking)
			if err != nil {
				t.Fatal(err)
			}
			ix := &crl.Index{}
			if err := ix.Add(rl, w.regRoot.Cert, w.now); err != nil {
				t.Fatal(err)
			}
			if state, _, why := crl.Judge(ix, img, crl.Policy{}, w.now); state != crl.StateRevoked {
				t.Errorf("the CRL job judges it %s (%s) with its certificate revoked, want %s", state, why, crl.StateRevoked)
			}
		})
	}
}
