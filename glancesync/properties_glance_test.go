package glancesync

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// TestImagePropertyPolicyGlance: a bundle with hw_disk_bus=virtio,
// hw_cpu_policy=dedicated and trait:CUSTOM_X=required is mirrored under
// the default policy with hw_disk_bus only (the outcome, the dry-run plan
// and one WARN per bundle name the others; dropped_properties_total counts
// them), and the gate boots it; the policy widened to "*" writes the
// others back, narrowed again removes them, in one PATCH each, and a pass
// after either writes nothing. A property an operator set by hand (one
// the descriptor does not name, or one it names set to another value)
// survives. Against the real Glance.
func TestImagePropertyPolicyGlance(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "props-" + uuid.NewString()[:8], props: vmProps})
	base := e.options(t, w, map[string][]string{dir: {"atlas"}})
	base.Sync.Retire = "keep"
	policy := func(patterns []string) Options {
		o := base
		o.VOs = map[string]config.VO{}
		for k, v := range base.VOs {
			o.VOs[k] = v
		}
		o.VOs["atlas"] = config.VO{Visibility: "shared", ImageProperties: patterns}
		o.Metrics = NewMetrics(nil)
		return o
	}
	// has checks the image's free-form properties: want (name → value,
	// "" for absent)
	has := func(t *testing.T, when string, want map[string]string) {
		t.Helper()
		im := e.get(t, p.id)
		for k, v := range want {
			if got, ok := im.Props[k]; v == "" && ok || v != "" && got != v {
				t.Errorf("%s: %s = %q (set: %v), want %q", when, k, got, ok, v)
			}
		}
	}
	// pass runs one pass of s and returns the bundle's one outcome and
	// the writes Glance took
	pass := func(t *testing.T, s *Syncer) (Outcome, int64) {
		t.Helper()
		before := e.counter.reset()
		r, err := s.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []Outcome
		for _, o := range r.Find(p.id) {
			if o.Action != ActionAlias && o.Action != ActionUpdate {
				out = append(out, o)
			}
		}
		if r.Errors != 0 || len(out) != 1 {
			t.Fatalf("pass: %d errors, outcomes %+v", r.Errors, r.Outcomes)
		}
		return out[0], e.counter.writes.Load() - before
	}
	syncer := func(o Options) *Syncer {
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("ok default policy: mirrored with hw_disk_bus only", func(t *testing.T) {
		o := policy(nil)
		log, logs := captureLogger(t)
		o.Logger = log
		s := syncer(o)
		out, _ := pass(t, s)
		if out.Action != ActionMirrored || !strings.Contains(out.Detail, "hw_cpu_policy, trait:CUSTOM_X") || strings.Contains(out.Detail, "dedicated") {
			t.Fatalf("outcome %+v, want mirrored naming hw_cpu_policy, trait:CUSTOM_X (and no value)", out)
		}
		has(t, "mirrored", map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "", "trait:CUSTOM_X": ""})
		if n := metricValue(t, o.Metrics.DroppedProps.WithLabelValues("atlas")); n != 2 {
			t.Errorf("dropped_properties_total{vo=atlas} = %v, want 2", n)
		}
		im := e.get(t, p.id)
		d := o.Trust.DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: im.Status, Properties: im.Props}, validator.BootPolicy{MirrorProject: e.project}, time.Now())
		if !d.Allowed {
			t.Fatalf("the gate refuses the image mirrored without the refused properties: %v %s", d.Reasons, d.Message)
		}
		out, writes := pass(t, s)
		if out.Action != ActionUnchanged || !strings.Contains(out.Detail, "hw_cpu_policy, trait:CUSTOM_X") || writes != 0 {
			t.Fatalf("second pass: %+v, %d writes; want unchanged naming the refused properties, no write", out, writes)
		}
		if warns := logs.lines(droppedLogMsg); len(warns) != 1 || warns[0].attrs["properties"] != "[hw_cpu_policy trait:CUSTOM_X]" {
			t.Fatalf("WARN %q logged %d times (%+v), want once naming the properties", droppedLogMsg, len(warns), warns)
		}
		// an operator's own properties, which no descriptor names
		if err := e.admin.Patch(ctx, p.id, []PatchOp{{Name: "hw_mem_page_size", Value: "large"}, {Name: "trait:CUSTOM_OPS", Value: "required"}}); err != nil {
			t.Fatal(err)
		}
	})
	operators := map[string]string{"hw_mem_page_size": "large", "trait:CUSTOM_OPS": "required"}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range operators {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}

	t.Run("ok widened to every property: written back", func(t *testing.T) {
		s := syncer(policy([]string{"*"}))
		out, writes := pass(t, s)
		if out.Action != ActionProperties || !strings.Contains(out.Detail, "wrote back hw_cpu_policy, trait:CUSTOM_X") || writes != 1 {
			t.Fatalf("outcome %+v, %d writes; want %s writing back hw_cpu_policy, trait:CUSTOM_X in one PATCH", out, writes, ActionProperties)
		}
		has(t, "widened", with(vmProps))
		if out, writes := pass(t, s); out.Action != ActionUnchanged || writes != 0 {
			t.Fatalf("the pass after: %+v, %d writes", out, writes)
		}
	})

	t.Run("ok narrowed: dry run plans, the pass removes", func(t *testing.T) {
		o := policy(nil)
		var plan bytes.Buffer
		o.DryRun, o.Plan = true, &plan
		out, writes := pass(t, syncer(o))
		if out.Action != ActionProperties || writes != 0 || !strings.Contains(plan.String(), ActionProperties+" "+p.id) ||
			!strings.Contains(plan.String(), "remove hw_cpu_policy, trait:CUSTOM_X (refused by image_properties)") {
			t.Fatalf("dry run: %+v, %d writes, plan:\n%s", out, writes, plan.String())
		}
		o = policy(nil)
		out, writes = pass(t, syncer(o))
		if out.Action != ActionProperties || !strings.Contains(out.Detail, "removed hw_cpu_policy, trait:CUSTOM_X") || writes != 1 {
			t.Fatalf("outcome %+v, %d writes; want %s removing hw_cpu_policy, trait:CUSTOM_X in one PATCH", out, writes, ActionProperties)
		}
		has(t, "narrowed", with(map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "", "trait:CUSTOM_X": ""}))
		if n := metricValue(t, o.Metrics.DroppedProps.WithLabelValues("atlas")); n != 2 {
			t.Errorf("dropped_properties_total{vo=atlas} = %v, want 2", n)
		}
		if out, writes := pass(t, syncer(policy(nil))); out.Action != ActionUnchanged || writes != 0 {
			t.Fatalf("the pass after: %+v, %d writes", out, writes)
		}
	})

	t.Run("ok a refused property an operator set to another value survives", func(t *testing.T) {
		pass(t, syncer(policy([]string{"*"})))
		if err := e.admin.Patch(ctx, p.id, []PatchOp{{Name: "hw_cpu_policy", Value: "shared"}}); err != nil {
			t.Fatal(err)
		}
		out, _ := pass(t, syncer(policy(nil)))
		if out.Action != ActionProperties || !strings.Contains(out.Detail, "removed trait:CUSTOM_X") || strings.Contains(out.Detail, "removed hw_cpu_policy") {
			t.Fatalf("outcome %+v, want trait:CUSTOM_X removed and hw_cpu_policy kept", out)
		}
		has(t, "narrowed", with(map[string]string{"hw_disk_bus": "virtio", "hw_cpu_policy": "shared", "trait:CUSTOM_X": ""}))
	})
}
