package glancesync

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/validator"
)

// TestLostRecordRestored: an image of the mirror project whose catalogue
// record was removed (imagetrust_descriptor, imagetrust_signature and other
// imagetrust_* properties unset by hand) while Glance's own sha512 and size
// of its data still equal the signed ones gets the record back from the
// verified bundle, instead of the bundle being refused as uuid-immutable on
// every pass. What is still there is never overwritten, and the global
// validity flag is never set, and removed when it says valid and a property
// the CRL job judges was lost (crl.JudgedProperties): the CRL job did not
// judge the signed record while it was lost, so the proxy refuses the
// image (global-validity:missing) until the CRL job's next run writes the
// flag again; when only other properties were lost (imagetrust_vo,
// imagetrust_tag) valid is kept and the image boots at once; a hold is kept. A record present with other values stays
// uuid-immutable, and one lost on an image whose data is not the bundle's
// is refused with a message that says so. Against the real Glance.
func TestLostRecordRestored(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	signedOnly := []string{validator.PropDescriptor, validator.PropSignature, validator.PropUUID, validator.PropVO, validator.PropTag,
		validator.PropChain, validator.PropRecordVersion}
	unset := func(t *testing.T, id string, names ...string) {
		t.Helper()
		var ops []PatchOp
		for _, n := range names {
			ops = append(ops, PatchOp{Name: n, Remove: true})
		}
		if err := e.admin.Patch(ctx, id, ops); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// mirrored: the first pass mirrors the bundle before change
		mirrored bool
		dry      bool
		change   func(t *testing.T, p *published)
		// repaired: the judged pass restores the record; otherwise it
		// refuses the bundle as uuid-immutable with a detail holding why
		repaired bool
		why      string
		// validity is imagetrust_global_validity after the judged pass
		validity string
		status   string
	}{
		{name: "ok record removed, validity flag too", mirrored: true, repaired: true, validity: "", status: StatusActive,
			change: func(t *testing.T, p *published) {
				unset(t, p.id, append(signedOnly, validator.PropGlobalValidity)...)
			}},
		{name: "ok descriptor and signature removed, the CRL job's hold kept", mirrored: true, repaired: true, validity: validator.GlobalHold, status: StatusActive,
			change: func(t *testing.T, p *published) {
				if err := e.admin.Patch(ctx, p.id, []PatchOp{{Name: validator.PropGlobalValidity, Value: validator.GlobalHold}}); err != nil {
					t.Fatal(err)
				}
				unset(t, p.id, validator.PropDescriptor, validator.PropSignature)
			}},
		{name: "ok descriptor and signature removed, a valid flag left from before removed", mirrored: true, repaired: true, validity: "", status: StatusActive,
			change: func(t *testing.T, p *published) {
				unset(t, p.id, validator.PropDescriptor, validator.PropSignature)
			}},
		{name: "ok descriptor and signature removed, the CRL job's revoked kept", mirrored: true, repaired: true, validity: validator.GlobalRevoked, status: StatusActive,
			change: func(t *testing.T, p *published) {
				if err := e.admin.Patch(ctx, p.id, []PatchOp{{Name: validator.PropGlobalValidity, Value: validator.GlobalRevoked}}); err != nil {
					t.Fatal(err)
				}
				unset(t, p.id, validator.PropDescriptor, validator.PropSignature)
			}},
		{name: "ok deactivated image", mirrored: true, repaired: true, validity: "", status: StatusDeactivated,
			change: func(t *testing.T, p *published) {
				if err := e.admin.Deactivate(ctx, p.id); err != nil {
					t.Fatal(err)
				}
				unset(t, p.id, validator.PropDescriptor, validator.PropSignature, validator.PropTag)
			}},
		{name: "ok a record lost in part: descriptor and signature kept", mirrored: true, repaired: true, validity: "", status: StatusActive,
			change: func(t *testing.T, p *published) {
				unset(t, p.id, validator.PropVO, validator.PropChain, validator.PropRecordVersion)
			}},
		{name: "ok vo and tag unset, the CRL job's valid kept: it judges neither", mirrored: true, repaired: true, validity: validator.GlobalValid, status: StatusActive,
			change: func(t *testing.T, p *published) {
				unset(t, p.id, validator.PropVO, validator.PropTag)
			}},
		{name: "ok dry run plans the repair and writes nothing", mirrored: true, dry: true, status: StatusActive,
			change: func(t *testing.T, p *published) {
				unset(t, p.id, validator.PropDescriptor, validator.PropSignature)
			}},
		{name: "fail record present and different", mirrored: true, why: "another record", validity: validator.GlobalValid, status: StatusActive,
			change: func(t *testing.T, p *published) {
				if err := e.admin.Patch(ctx, p.id, []PatchOp{{Name: validator.PropDescriptor, Value: "e30="}}); err != nil {
					t.Fatal(err)
				}
				unset(t, p.id, validator.PropSignature)
			}},
		{name: "fail record absent and Glance's data another", why: "os_hash_value differs", status: StatusActive,
			change: func(t *testing.T, p *published) {
				if _, err := e.glance.Create(ctx, CreateSpec{ID: p.id, Name: "other bytes", DiskFormat: "raw", ContainerFormat: "bare", Visibility: "private"}); err != nil {
					t.Fatal(err)
				}
				other := make([]byte, len(p.image))
				_, _ = rand.Read(other)
				if err := e.glance.Upload(ctx, p.id, bytes.NewReader(other), ""); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "fail record absent, the bundle's bytes uploaded with a kernel_id", why: "carries kernel_id, ramdisk_id", status: StatusActive,
			change: func(t *testing.T, p *published) {
				// a member of the mirror project, ahead of the sync
				if _, err := e.glance.Create(ctx, CreateSpec{ID: p.id, Name: "ours?", DiskFormat: "raw", ContainerFormat: "bare", Visibility: "private",
					Props: map[string]string{"kernel_id": uuid.NewString(), "ramdisk_id": uuid.NewString()}}); err != nil {
					t.Fatal(err)
				}
				if err := e.glance.Upload(ctx, p.id, bytes.NewReader(p.image), ""); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "fail record absent on a queued image", why: "is queued", status: StatusQueued,
			change: func(t *testing.T, p *published) {
				if _, err := e.glance.Create(ctx, CreateSpec{ID: p.id, Name: "no bytes", DiskFormat: "raw", ContainerFormat: "bare", Visibility: "private"}); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "lost-" + uuid.NewString()[:8]})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = "keep"
			o.ResumeAfter = -1
			var record map[string]string
			if tc.mirrored {
				if r := run(t, o); r.Errors != 0 || e.get(t, p.id).Status != StatusActive {
					t.Fatalf("first pass: %+v", r.Outcomes)
				}
				record = e.get(t, p.id).Props
			}
			tc.change(t, p)
			changed := e.get(t, p.id).Props
			var plan bytes.Buffer
			o.DryRun, o.Plan = tc.dry, &plan
			o.Metrics = NewMetrics(nil)
			before := e.counter.reset()
			r := run(t, o)
			out := r.Find(p.id)
			if r.Errors != 0 || len(out) == 0 {
				t.Fatalf("judged pass: %d errors, outcomes %+v", r.Errors, r.Outcomes)
			}
			im := e.get(t, p.id)
			if im.Status != tc.status {
				t.Errorf("status %s, want %s", im.Status, tc.status)
			}
			switch {
			case tc.dry:
				if out[0].Action != ActionRepair || !strings.Contains(plan.String(), ActionRepair+" "+p.id) {
					t.Fatalf("dry run: outcomes %+v, plan:\n%s", out, plan.String())
				}
				if !strings.Contains(out[0].Detail, validator.PropGlobalValidity+"=valid removed") {
					t.Errorf("dry run: detail %q does not say the valid flag is removed", out[0].Detail)
				}
				if n := e.counter.writes.Load() - before; n != 0 || im.Props[validator.PropDescriptor] != "" || im.Props[validator.PropGlobalValidity] != validator.GlobalValid {
					t.Fatalf("dry run: %d writes, descriptor %q, global validity %q", n, im.Props[validator.PropDescriptor], im.Props[validator.PropGlobalValidity])
				}
			case tc.repaired:
				if out[0].Action != ActionRepair || out[0].Reason != "" || len(out) != 1 {
					t.Fatalf("outcomes %+v, want one %s", out, ActionRepair)
				}
				for k, v := range record {
					if strings.HasPrefix(k, validator.PropPrefix) && k != validator.PropGlobalValidity && im.Props[k] != v {
						t.Errorf("%s = %q after the repair, want %q", k, im.Props[k], v)
					}
				}
				if got := im.Props[validator.PropGlobalValidity]; got != tc.validity {
					t.Errorf("%s = %q, want %q: a repair never sets the flag and removes only valid", validator.PropGlobalValidity, got, tc.validity)
				}
				if tc.validity == validator.GlobalValid {
					d := o.Trust.DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: StatusActive, Properties: im.Props},
						validator.BootPolicy{MirrorProject: e.project}, time.Now())
					if !d.Allowed {
						t.Errorf("after the repair, the valid flag kept, the proxy refuses the image: %v %s", d.Reasons, d.Message)
					}
				}
				if tc.validity == "" {
					// refused until the CRL job judges the restored record,
					// whose next run then writes the flag (valid, here)
					d := o.Trust.DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: StatusActive, Properties: im.Props},
						validator.BootPolicy{MirrorProject: e.project}, time.Now())
					if d.Allowed || !contains(d.Reasons, validator.DecisionGlobalPrefix+"missing") {
						t.Errorf("after the repair the proxy decides %v %v (%s), want refused %smissing", d.Allowed, d.Reasons, d.Message, validator.DecisionGlobalPrefix)
					}
					ch := crl.Plan(crl.Image{ID: im.ID, Status: im.Status, Properties: im.Props}, crl.StateValid, nil, "")
					if ch == nil || ch.Set[crl.PropGlobalValidity] != crl.StateValid {
						t.Errorf("the CRL job's plan for the repaired image: %+v, want %s set to %s", ch, crl.PropGlobalValidity, crl.StateValid)
					}
				}
				if n := metricValue(t, o.Metrics.Repaired); n != 1 {
					t.Errorf("records_repaired_total = %v, want 1", n)
				}
				// repaired for good: the next pass has nothing to do
				before = e.counter.reset()
				r = run(t, o)
				if out := r.Find(p.id); r.Errors != 0 || len(out) != 1 || out[0].Action != ActionUnchanged {
					t.Fatalf("pass after the repair: %+v", out)
				}
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("pass after the repair: %d writes:\n%s", n, e.counter.log)
				}
			default:
				if len(out) != 1 || out[0].Action != ActionRefused || out[0].Reason != ReasonUUIDImmutable || !strings.Contains(out[0].Detail, tc.why) {
					t.Fatalf("outcomes %+v, want %s refused with %q", out, ReasonUUIDImmutable, tc.why)
				}
				for k, v := range changed {
					if im.Props[k] != v && k != "os_glance_import_task" {
						t.Errorf("%s changed from %q to %q", k, v, im.Props[k])
					}
				}
				for k := range im.Props {
					if _, had := changed[k]; !had {
						t.Errorf("%s written (%q)", k, im.Props[k])
					}
				}
			}
		})
	}
}
