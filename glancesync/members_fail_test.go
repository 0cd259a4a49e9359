package glancesync

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/config"
)

// TestMemberAddRefusedIsAnOutcome: Glance refusing to add a member for a
// reason other than a limit (here its 400 "Member can't be empty" to a
// project id that is empty: the real refusal of the stack's Glance, as a
// policy's 403 or a 5xx would be) shows in the pass's outcome as the limit
// case does: a failed outcome naming the member and Glance's answer, the
// pass's errors (Report.Errors and Failed), imagetrust_sync_errors_total
// and imagetrust_sync_failing_images. The image is mirrored and shared
// with the other project, and its verification state is untouched:
// active, unhidden, no refusal record, the same record properties. The
// next pass tries the member again (and fails again, visibly). Before,
// the failure was only logged (and counted in Report.Errors): no outcome,
// no imagetrust_sync_errors_total. Against the real Glance.
func TestMemberAddRefusedIsAnOutcome(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "members-refused"})
	good := strings.ReplaceAll(uuid.NewString(), "-", "")
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{good, ""}}
	o.Sync.Retire = "keep"
	o.Metrics = NewMetrics(prometheus.NewRegistry())
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var record map[string]string // the imagetrust_ properties after pass 1
	for pass := 1; pass <= 2; pass++ {
		before := metricValue(t, o.Metrics.Errors)
		r, err := s.Run(t.Context())
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		var failed *Outcome
		for _, out := range r.Find(p.id) {
			if out.Action == ActionFailed {
				failed = &out
			}
		}
		if failed == nil || !strings.Contains(failed.Detail, "add member : ") || !strings.Contains(failed.Detail, "Member can't be empty") {
			t.Fatalf("pass %d: outcomes %+v; want a failed one naming the member and Glance's answer", pass, r.Find(p.id))
		}
		if r.Errors == 0 || !slices.Contains(r.Failed, p.id) {
			t.Errorf("pass %d: %d errors, failed %v; want the image among them", pass, r.Errors, r.Failed)
		}
		if got := metricValue(t, o.Metrics.Errors) - before; got < 1 {
			t.Errorf("pass %d: imagetrust_sync_errors_total grew by %v, want at least 1", pass, got)
		}
		if got := metricValue(t, o.Metrics.FailingImages); got < 1 {
			t.Errorf("pass %d: imagetrust_sync_failing_images %v, want at least 1", pass, got)
		}
		im := e.get(t, p.id)
		if im.Status != StatusActive || im.Hidden || hasRefusalRecord(im) {
			t.Fatalf("pass %d: image %s hidden %v props %v; want active, shown, no refusal record", pass, im.Status, im.Hidden, im.Props)
		}
		props := map[string]string{}
		for k, v := range im.Props {
			if strings.HasPrefix(k, "imagetrust_") {
				props[k] = v
			}
		}
		if pass == 1 {
			record = props
			continue
		}
		if !maps.Equal(record, props) {
			t.Errorf("the record changed between passes:\n%v\n%v", record, props)
		}
		members, err := e.admin.Members(t.Context(), p.id)
		if err != nil || !slices.Contains(members, good) {
			t.Errorf("members %v (%v); want %s", members, err, good)
		}
	}
}

// memberGoneMeanwhile removes a member itself just before the sync does:
// an operator (or another sync) removing it between the pass's listing of
// the members and its removal. The real Glance then answers 404.
type memberGoneMeanwhile struct{ Glance }

func (g memberGoneMeanwhile) RemoveMember(ctx context.Context, id, project string) error {
	if err := g.Glance.RemoveMember(ctx, id, project); err != nil {
		return err
	}
	return g.Glance.RemoveMember(ctx, id, project)
}

// TestMemberGoneMeanwhileIsNoError: a member the pass removes that is
// already gone (Glance's 404) is what the pass wanted, not an error of
// the pass: no failed outcome, no error counted, the members remembered.
// Before, the pass counted an error and a failed outcome. Against the
// real Glance.
func TestMemberGoneMeanwhileIsNoError(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "members-gone"})
	keep, drop := strings.ReplaceAll(uuid.NewString(), "-", ""), strings.ReplaceAll(uuid.NewString(), "-", "")
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{keep, drop}}
	o.Sync.Retire = "keep"
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("pass 1: %d errors", r.Errors)
	}
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{keep}}
	o.Glance = memberGoneMeanwhile{o.Glance}
	r := run(t, o)
	for _, out := range r.Find(p.id) {
		if out.Action == ActionFailed {
			t.Errorf("failed outcome %+v", out)
		}
	}
	if r.Errors != 0 || slices.Contains(r.Failed, p.id) {
		t.Errorf("pass 2: %d errors, failed %v; want none", r.Errors, r.Failed)
	}
	members, err := e.admin.Members(t.Context(), p.id)
	if err != nil || !slices.Equal(members, []string{keep}) {
		t.Errorf("members %v (%v); want only %s", members, err, keep)
	}
}
