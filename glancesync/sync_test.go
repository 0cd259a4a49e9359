package glancesync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/validator"
)

// TestSyncMirrorsVerifiedOnly mirrors several VOs and tags next to every
// hostile bundle of the trust core, then checks idempotence, the operator's
// local validity, retirement and aliases.
func TestSyncMirrorsVerifiedOnly(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	root := t.TempDir()
	atlas, cmsDir := filepath.Join(root, "atlas"), filepath.Join(root, "cms")
	good := []*published{
		w.publish(atlas, spec{vo: "atlas", tag: "worker"}),
		w.publish(atlas, spec{vo: "atlas", tag: "analysis", size: 3 << 20}),
		w.publish(cmsDir, spec{vo: "cms", tag: "worker"}),
		w.publish(filepath.Join(cmsDir, "sub"), spec{vo: "cms", tag: "gpu"}),
	}
	hostile := map[string]*published{
		"tampered descriptor":  w.publish(atlas, spec{tamperDesc: true}),
		"tampered image":       w.publish(atlas, spec{tamperImage: true}),
		"truncated image":      w.publish(atlas, spec{truncate: true}),
		"padded image":         w.publish(atlas, spec{pad: true}),
		"wrong sha":            w.publish(atlas, spec{wrongSHA: true}),
		"no approver":          w.publish(atlas, spec{noApprover: true}),
		"untrusted signer":     w.publish(atlas, spec{untrusted: true}),
		"expired":              w.publish(atlas, spec{expired: true}),
		"vo of another source": w.publish(atlas, spec{vo: "lhcb"}),
	}
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}, cmsDir: {"cms"}})
	r := run(t, o)
	if r.Errors != 0 {
		t.Fatalf("first pass: %d errors: %+v", r.Errors, r.Outcomes)
	}
	for _, p := range good {
		im := e.get(t, p.id)
		if im.Status != StatusActive || im.Owner != e.project || im.Hidden {
			t.Errorf("good bundle %s: status %s owner %s hidden %v", p.id, im.Status, im.Owner, im.Hidden)
		}
		if im.Props[validator.PropDescriptor] == "" || im.Props[validator.PropSignature] == "" || im.Props[validator.PropGlobalValidity] != "valid" {
			t.Errorf("good bundle %s: record incomplete: %v", p.id, im.Props)
		}
		if im.Props["os_hash_value"] != im.Props[validator.PropSHA512] || im.Props["hw_rng_model"] != "virtio" || im.Props["os_distro"] != "alma" {
			t.Errorf("good bundle %s: properties %v", p.id, im.Props)
		}
		if _, has := im.Props[validator.PropLocalValidity]; has {
			t.Errorf("good bundle %s: the sync wrote %s", p.id, validator.PropLocalValidity)
		}
	}
	for name, p := range hostile {
		im, err := e.admin.Get(context.Background(), p.id)
		if err == nil && im.Status == StatusActive {
			t.Errorf("hostile bundle %q is active in Glance", name)
		}
		refused := false
		for _, o := range r.Find(p.id) {
			refused = refused || o.Action == ActionRefused
		}
		if !refused {
			t.Errorf("hostile bundle %q: not reported as refused: %+v", name, r.Find(p.id))
		}
	}
	// No active image of the mirror project carries a hostile id.
	all, err := e.admin.List(context.Background(), e.project, map[string]string{"status": "active"})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range all {
		for name, p := range hostile {
			if im.ID == p.id {
				t.Errorf("hostile bundle %q listed active", name)
			}
		}
	}
	// Aliases: TAG and VO/TAG per (VO, tag).
	aliases, err := e.admin.List(context.Background(), e.project, map[string]string{validator.PropAlias: "atlas/worker"})
	if err != nil {
		t.Fatal(err)
	}
	if len(aliases) != 2 {
		t.Errorf("atlas/worker aliases: %d, want 2", len(aliases))
	}

	// An unchanged rerun writes nothing. A new Syncer (as with --once) finds
	// the images whose bytes were refused queued and recent, and leaves them;
	// the same Syncer remembers their refusal until their back-off ends.
	before := e.counter.reset()
	r = run(t, o)
	if n := e.counter.writes.Load() - before; n != 0 || r.Errors != 0 {
		t.Errorf("unchanged rerun: %d writes (%d errors):\n%s", n, r.Errors, e.counter.log)
	}
	for name, p := range hostile {
		for _, out := range r.Find(p.id) {
			// a new process finds an image whose bytes were refused
			// queued (left for a later pass) and, within resume_after,
			// leaves it to whoever queued it
			streamed := map[string]bool{"tampered image": true, "truncated image": true, "padded image": true, "wrong sha": true}
			if out.Action != ActionRefused && (!streamed[name] || out.Action != ActionElsewhere) {
				t.Errorf("rerun, hostile %q: %+v", name, out)
			}
		}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 2; pass++ {
		if _, err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rejected := e.counter.rejected.Load()
	before = e.counter.reset()
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.counter.writes.Load() - before; n != 0 || e.counter.rejected.Load() != rejected {
		t.Errorf("third pass of one Syncer: %d writes, %d refused:\n%s", n, e.counter.rejected.Load()-rejected, e.counter.log)
	}

	// The operator's local validity survives resyncs.
	target := good[0].id
	if err := e.admin.Patch(context.Background(), target, []PatchOp{{Name: validator.PropLocalValidity, Value: validator.LocalBlacklist}}); err != nil {
		t.Fatal(err)
	}
	before = e.counter.reset()
	run(t, o)
	if got := e.get(t, target).Props[validator.PropLocalValidity]; got != validator.LocalBlacklist {
		t.Errorf("local validity after resync: %q", got)
	}
	if n := e.counter.writes.Load() - before; n != 0 {
		t.Errorf("rerun after the operator's change: %d writes", n)
	}

	// A newer image in a tag hides the older; a bundle that left hides too.
	// The cms bundle leaves its source; a copy in the atlas source (which
	// may not publish for cms) does not keep it current.
	newer := w.publish(atlas, spec{vo: "atlas", tag: "worker", created: w.now.Add(-time.Minute)})
	removeBundle(t, good[2])
	// Nor does an unsigned descriptor there that names atlas and the cms
	// image's uuid.
	forged := strings.Replace(strings.Replace(string(good[2].desc), `"vo":"cms"`, `"vo":"atlas"`, 1), `"vo": "cms"`, `"vo": "atlas"`, 1)
	if !strings.Contains(forged, "atlas") {
		t.Fatalf("descriptor not rewritten: %s", good[2].desc)
	}
	for name, b := range map[string][]byte{"stray.json": good[2].desc, "stray.json.p7s": good[2].sig,
		"forged.json": []byte(forged), "forged.json.p7s": []byte("not a signature")} {
		if err := os.WriteFile(filepath.Join(atlas, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = run(t, o)
	if r.Errors != 0 {
		t.Fatalf("retire pass: %+v", r.Outcomes)
	}
	if im := e.get(t, newer.id); im.Status != StatusActive || im.Hidden {
		t.Errorf("newer image: %s hidden %v", im.Status, im.Hidden)
	}
	if !e.get(t, good[0].id).Hidden {
		t.Errorf("superseded image not hidden")
	}
	if !e.get(t, good[2].id).Hidden {
		t.Errorf("image that left its source not hidden")
	}
	if e.get(t, good[1].id).Hidden {
		t.Errorf("current image hidden")
	}
}

// TestSquattedID: an id created first by another project is never touched.
func TestSquattedID(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "squat"})
	if _, err := images.Create(context.Background(), e.demo, images.CreateOpts{ID: p.id, Name: "mine", DiskFormat: "raw", ContainerFormat: "bare"}).Extract(); err != nil {
		t.Fatal(err)
	}
	r := run(t, e.options(t, w, map[string][]string{dir: {"atlas"}}))
	out := r.Find(p.id)
	if len(out) != 1 || out[0].Reason != ReasonSquatted {
		t.Fatalf("outcome %+v, want %s", out, ReasonSquatted)
	}
	im := e.get(t, p.id)
	if im.Name != "mine" || im.Status != StatusQueued || im.Props[validator.PropUUID] != "" {
		t.Errorf("squatted image changed: %+v", im)
	}
}

// TestDeletedIDSaidClearly: a bundle whose id Glance refuses to create and
// does not show (deleted, or another project's private image) is refused
// by name, with a detail that names both possibilities.
func TestDeletedIDSaidClearly(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "cms", tag: "deleted"})
	if _, err := e.admin.Create(context.Background(), CreateSpec{ID: p.id, Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Delete(context.Background(), p.id); err != nil {
		t.Fatal(err)
	}
	r := run(t, e.options(t, w, map[string][]string{dir: {"cms"}}))
	out := r.Find(p.id)
	if len(out) != 1 || out[0].Reason != ReasonIDDeleted {
		t.Fatalf("outcome %+v, want %s", out, ReasonIDDeleted)
	}
	// Glance cannot tell the mirror user a deleted id from another
	// project's private image: the detail says both, and not to delete.
	for _, want := range []string{"not visible to the mirror project", "or was deleted", "do not delete another project's image"} {
		if !strings.Contains(out[0].Detail, want) {
			t.Errorf("detail %q does not say %q", out[0].Detail, want)
		}
	}
}

// TestUUIDImmutable: a bundle republished under the same uuid with other
// bytes (a new image, a new signature) is refused by name; the mirrored
// image and its record stay as they were.
func TestUUIDImmutable(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	first := w.publish(dir, spec{vo: "atlas", tag: "immutable", name: "img"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	run(t, o)
	before := e.get(t, first.id)
	if before.Status != StatusActive {
		t.Fatalf("first mirror: status %s", before.Status)
	}
	second := w.publish(dir, spec{vo: "atlas", tag: "immutable", name: "img", id: first.id})
	if string(second.desc) == string(first.desc) {
		t.Fatal("the republished descriptor is identical")
	}
	r := run(t, o)
	out := r.Find(first.id)
	if len(out) != 1 || out[0].Reason != ReasonUUIDImmutable {
		t.Fatalf("outcome %+v, want %s", out, ReasonUUIDImmutable)
	}
	after := e.get(t, first.id)
	if after.Status != StatusActive || after.Props[validator.PropDescriptor] != before.Props[validator.PropDescriptor] ||
		after.Props[validator.PropSignature] != before.Props[validator.PropSignature] {
		t.Fatalf("the mirrored image changed: %+v", after)
	}
}
