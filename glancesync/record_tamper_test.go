package glancesync

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// TestEditedRecordRestored: an image of the mirror project whose signed
// record properties were edited in Glance (imagetrust_image_not_after,
// imagetrust_vo …) while imagetrust_descriptor and imagetrust_signature
// are the bundle's (or lost) is refused by the proxy as record-tampered;
// the pass no longer reports it unchanged, but rewrites the edited
// properties (and restores missing ones) from the verified bundle when
// Glance's sha512 and size of its data are the signed ones: a
// record-repair outcome, a WARN line naming the properties (not their
// values), records_repaired_total. The validity flags are never set; a
// global validity of valid is removed when a property the CRL job judges
// (crl.JudgedProperties: imagetrust_image_not_before, imagetrust_signature
// …) is among those restored (the CRL job judged the edited record, not
// the signed one, and judges the restored one at its next run), and kept
// when only others are (imagetrust_vo, imagetrust_image_not_after …: the
// CRL job's verdict was on what the repair leaves as it is, and the image
// boots at once); a hold and the local flag are kept.
// When the data is not the bundle's, nothing is written and the refusal
// says the record was edited, not that it is "another record". The
// proxy's own decision (validator.Trust.DecideBoot) finds the record
// tampered before the pass and not after. Against the real Glance.
func TestEditedRecordRestored(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const forged = "2099-01-01T00:00:00Z"
	patch := func(t *testing.T, id string, ops ...PatchOp) {
		t.Helper()
		if err := e.admin.Patch(ctx, id, ops); err != nil {
			t.Fatal(err)
		}
	}
	unset := func(names ...string) []PatchOp {
		var ops []PatchOp
		for _, n := range names {
			ops = append(ops, PatchOp{Name: n, Remove: true})
		}
		return ops
	}
	// recordOf is the bundle's catalogue record, as the sync writes it.
	recordOf := func(t *testing.T, o Options, p *published) map[string]string {
		t.Helper()
		r := o.Trust.Verify(validator.Input{Descriptor: p.desc, Signature: p.sig, Now: time.Now()})
		rec, err := validator.RecordProperties(r, p.desc, p.sig)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// otherData makes the bundle's uuid an image of the mirror project
	// carrying props, with other bytes than the bundle's (shared and not
	// hidden, as the VO's images are: the pass has no visibility to write).
	otherData := func(t *testing.T, p *published, props map[string]string) {
		t.Helper()
		if _, err := e.glance.Create(ctx, CreateSpec{ID: p.id, Name: "other bytes", DiskFormat: "raw", ContainerFormat: "bare", Visibility: "shared", Props: props}); err != nil {
			t.Fatal(err)
		}
		other := make([]byte, len(p.image))
		_, _ = rand.Read(other)
		if err := e.glance.Upload(ctx, p.id, bytes.NewReader(other), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// mirrored: the first pass mirrors the bundle before change
		mirrored bool
		dry      bool
		change   func(t *testing.T, o Options, p *published)
		// changed and missing: the properties the judged pass names as
		// edited and unset
		changed, missing []string
		// repaired: the judged pass restores the record; otherwise it
		// refuses the bundle as uuid-immutable with a detail holding why
		repaired bool
		why      string
		status   string
		// validKept: a valid global validity before the pass is kept by
		// the repair (no property the CRL job judges is restored)
		validKept bool
	}{
		{name: "ok not_after edited on an active image, both flags kept", mirrored: true, repaired: true, status: StatusActive,
			changed: []string{validator.PropImageNotAfter},
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, PatchOp{Name: validator.PropImageNotAfter, Value: forged},
					PatchOp{Name: validator.PropGlobalValidity, Value: validator.GlobalHold},
					PatchOp{Name: validator.PropLocalValidity, Value: validator.LocalRunAnyway})
			}},
		{name: "ok not_after and uri edited on an active image, the CRL job's valid kept: it boots at once", mirrored: true, repaired: true, status: StatusActive,
			changed: []string{validator.PropImageNotAfter, validator.PropURI}, validKept: true,
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, PatchOp{Name: validator.PropImageNotAfter, Value: forged}, PatchOp{Name: validator.PropURI, Value: "https://elsewhere.example/x.img"})
			}},
		{name: "ok not_before edited on an active image, the valid flag removed: the CRL job judges it", mirrored: true, repaired: true, status: StatusActive,
			changed: []string{validator.PropImageNotBefore},
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, PatchOp{Name: validator.PropImageNotBefore, Value: "2001-01-01T00:00:00Z"})
			}},
		{name: "ok vo edited on a deactivated image", mirrored: true, repaired: true, status: StatusDeactivated,
			changed: []string{validator.PropVO}, validKept: true,
			change: func(t *testing.T, o Options, p *published) {
				if err := e.admin.Deactivate(ctx, p.id); err != nil {
					t.Fatal(err)
				}
				patch(t, p.id, PatchOp{Name: validator.PropVO, Value: "cms"})
			}},
		{name: "ok partly lost and edited, descriptor and signature kept", mirrored: true, repaired: true, status: StatusActive,
			changed: []string{validator.PropURI}, missing: []string{validator.PropTag}, validKept: true,
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, append(unset(validator.PropTag), PatchOp{Name: validator.PropURI, Value: "https://elsewhere.example/x.img"})...)
			}},
		{name: "ok partly lost and edited, descriptor and signature lost", mirrored: true, repaired: true, status: StatusActive,
			changed: []string{validator.PropImageNotAfter}, missing: []string{validator.PropDescriptor, validator.PropSignature},
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, append(unset(validator.PropDescriptor, validator.PropSignature), PatchOp{Name: validator.PropImageNotAfter, Value: forged})...)
			}},
		{name: "ok dry run plans the rewrite and writes nothing", mirrored: true, dry: true, status: StatusActive,
			changed: []string{validator.PropImageNotAfter}, validKept: true,
			change: func(t *testing.T, o Options, p *published) {
				patch(t, p.id, PatchOp{Name: validator.PropImageNotAfter, Value: forged})
			}},
		{name: "fail edited on a deactivated image whose data is another", why: "os_hash_value differs", status: StatusDeactivated,
			changed: []string{validator.PropImageNotAfter},
			change: func(t *testing.T, o Options, p *published) {
				rec := recordOf(t, o, p)
				rec[validator.PropImageNotAfter] = forged
				otherData(t, p, rec)
				if err := e.admin.Deactivate(ctx, p.id); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "fail partly lost and edited on an image whose data is another", why: "os_hash_value differs", status: StatusActive,
			changed: []string{validator.PropImageNotAfter}, missing: []string{validator.PropDescriptor, validator.PropSignature},
			change: func(t *testing.T, o Options, p *published) {
				rec := recordOf(t, o, p)
				rec[validator.PropImageNotAfter] = forged
				delete(rec, validator.PropDescriptor)
				delete(rec, validator.PropSignature)
				otherData(t, p, rec)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "edit-" + uuid.NewString()[:8]})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = "keep"
			o.Sync.Aliases = new(bool)
			o.ResumeAfter = -1
			var record map[string]string
			if tc.mirrored {
				if r := run(t, o); r.Errors != 0 || e.get(t, p.id).Status != StatusActive {
					t.Fatalf("first pass: %+v", r.Outcomes)
				}
				record = e.get(t, p.id).Props
			}
			tc.change(t, o, p)
			changed := e.get(t, p.id)
			// the proxy's verdict on the record (re-verified with the
			// descriptor and signature the repair would restore)
			decide := func(im *Image) validator.Decision {
				props := map[string]string{}
				for k, v := range im.Props {
					props[k] = v
				}
				for _, k := range []string{validator.PropDescriptor, validator.PropSignature} {
					if props[k] == "" {
						props[k] = recordOf(t, o, p)[k]
					}
				}
				return o.Trust.DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: StatusActive, Properties: props},
					validator.BootPolicy{MirrorProject: e.project}, time.Now())
			}
			if len(tc.changed) > 0 {
				if d := decide(changed); !contains(d.Reasons, validator.DecisionRecordTampered) {
					t.Fatalf("before the pass the proxy does not find the record tampered: %v %s", d.Reasons, d.Message)
				}
			}
			var plan bytes.Buffer
			o.DryRun, o.Plan = tc.dry, &plan
			o.Metrics = NewMetrics(nil)
			var logs *logCapture
			o.Logger, logs = captureLogger(t)
			before := e.counter.reset()
			r := run(t, o)
			out := r.Find(p.id)
			if r.Errors != 0 || len(out) != 1 {
				t.Fatalf("judged pass: %d errors, outcomes %+v", r.Errors, r.Outcomes)
			}
			im := e.get(t, p.id)
			if im.Status != tc.status {
				t.Errorf("status %s, want %s", im.Status, tc.status)
			}
			for _, k := range append(append([]string(nil), tc.changed...), tc.missing...) {
				if !strings.Contains(out[0].Detail, k) {
					t.Errorf("detail %q does not name %s", out[0].Detail, k)
				}
			}
			switch {
			case tc.dry:
				if out[0].Action != ActionRepair || !strings.Contains(plan.String(), ActionRepair+" "+p.id) {
					t.Fatalf("dry run: outcomes %+v, plan:\n%s", out, plan.String())
				}
				if n := e.counter.writes.Load() - before; n != 0 || im.Props[validator.PropImageNotAfter] != forged {
					t.Fatalf("dry run: %d writes, %s %q", n, validator.PropImageNotAfter, im.Props[validator.PropImageNotAfter])
				}
				if !strings.Contains(out[0].Detail, validator.PropGlobalValidity+"=valid kept") {
					t.Errorf("dry run: detail %q does not say the valid flag is kept", out[0].Detail)
				}
			case tc.repaired:
				if out[0].Action != ActionRepair || out[0].Reason != "" {
					t.Fatalf("outcome %+v, want %s", out[0], ActionRepair)
				}
				for k, v := range record {
					if strings.HasPrefix(k, validator.PropPrefix) && k != validator.PropGlobalValidity && k != validator.PropLocalValidity && im.Props[k] != v {
						t.Errorf("%s = %q after the repair, want %q", k, im.Props[k], v)
					}
				}
				if im.Props[validator.PropLocalValidity] != changed.Props[validator.PropLocalValidity] {
					t.Errorf("%s = %q after the repair, was %q: a repair never writes the local flag", validator.PropLocalValidity, im.Props[validator.PropLocalValidity], changed.Props[validator.PropLocalValidity])
				}
				wantGlobal := changed.Props[validator.PropGlobalValidity]
				if wantGlobal == validator.GlobalValid {
					say := "=valid kept"
					if !tc.validKept {
						wantGlobal, say = "", "=valid removed"
					}
					if !strings.Contains(out[0].Detail, validator.PropGlobalValidity+say) {
						t.Errorf("detail %q does not say %s%s", out[0].Detail, validator.PropGlobalValidity, say)
					}
				}
				if got := im.Props[validator.PropGlobalValidity]; got != wantGlobal {
					t.Errorf("%s = %q after the repair, was %q: want %q (valid removed only when a property the CRL job judges is restored, any other value kept)", validator.PropGlobalValidity, got, changed.Props[validator.PropGlobalValidity], wantGlobal)
				}
				d := decide(im)
				if contains(d.Reasons, validator.DecisionRecordTampered) || contains(d.Reasons, validator.DecisionRecordInvalid) {
					t.Errorf("after the repair the proxy refuses the record: %v %s", d.Reasons, d.Message)
				}
				switch {
				case wantGlobal == validator.GlobalValid && im.Status == StatusActive && !d.Allowed:
					t.Errorf("after the repair, the valid flag kept, the proxy refuses the image: %v %s", d.Reasons, d.Message)
				case wantGlobal == "" && !contains(d.Reasons, validator.DecisionGlobalPrefix+"missing"):
					t.Errorf("after the repair, the valid flag removed, the proxy decides %v %v, want refused %smissing", d.Allowed, d.Reasons, validator.DecisionGlobalPrefix)
				}
				if n := metricValue(t, o.Metrics.Repaired); n != 1 {
					t.Errorf("records_repaired_total = %v, want 1", n)
				}
				if len(tc.changed) > 0 {
					warned := false
					for _, rec := range logs.recs {
						if rec.level != slog.LevelWarn || !strings.Contains(rec.msg, "record") || rec.attrs["image"] != p.id {
							continue
						}
						warned = true
						for _, k := range tc.changed {
							if !strings.Contains(rec.attrs["changed"], k) {
								t.Errorf("WARN line %q: changed=%q does not name %s", rec.msg, rec.attrs["changed"], k)
							}
						}
						for a, v := range rec.attrs {
							if strings.Contains(v, forged) || strings.Contains(v, "elsewhere.example") || a == "vo" && v == "cms" {
								t.Errorf("WARN line %q logs a value: %s=%q", rec.msg, a, v)
							}
						}
					}
					if !warned {
						t.Errorf("no WARN line with id=%s for the repair", p.id)
					}
				}
				// repaired for good: the next pass has nothing to do
				o.Logger = testLogger(t)
				before = e.counter.reset()
				r = run(t, o)
				if out := r.Find(p.id); r.Errors != 0 || len(out) != 1 || out[0].Action != ActionUnchanged {
					t.Fatalf("pass after the repair: %+v", out)
				}
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("pass after the repair: %d writes:\n%s", n, e.counter.log)
				}
			default:
				if out[0].Action != ActionRefused || out[0].Reason != ReasonUUIDImmutable || !strings.Contains(out[0].Detail, tc.why) {
					t.Fatalf("outcome %+v, want %s refused with %q", out[0], ReasonUUIDImmutable, tc.why)
				}
				if !strings.Contains(out[0].Detail, "edited") || strings.Contains(out[0].Detail, "another record") {
					t.Errorf("detail %q: want the record named edited, not another record", out[0].Detail)
				}
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("%d writes:\n%s", n, e.counter.log)
				}
				if n := metricValue(t, o.Metrics.Refused.WithLabelValues(ReasonUUIDImmutable)); n != 1 {
					t.Errorf("images_refused_total{reason=uuid-immutable} = %v, want 1", n)
				}
			}
		})
	}
}
