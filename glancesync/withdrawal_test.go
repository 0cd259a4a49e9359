package glancesync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSourceWithdrawalIsTrusted pins what a source that cannot sign can
// still do to a VO without signed listings (listing = "none", the
// default; docs/security-model.md, "A source withholding or withdrawing
// bundles"; TestSignedListingWithdrawal is the signed case, where the
// withdrawal is refused): which bundles a source lists is not signed, so a
// bundle that leaves every source is the VO's withdrawal to the sync. Dropping a tag's newest image from
// the listing retires it, and the newest older one still listed becomes
// the tag's current image again: under retire = hide it is unhidden (a
// boot by tag rolls back to it, while its bytes, record and expiry are
// still checked); under retire = delete the withdrawn image is deleted and
// its uuid spent, so listing its bundle again brings nothing back (the
// publisher must register a new uuid). What the source cannot do is shown
// too: it cannot bring back a superseded image while the newer one is
// listed. Against the real Glance.
func TestSourceWithdrawalIsTrusted(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	ctx := context.Background()
	for _, retire := range []string{"hide", "delete"} {
		t.Run("retire "+retire, func(t *testing.T) {
			dir := t.TempDir()
			tag := "withdraw-" + retire
			old := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-2 * time.Hour)})
			cur := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-time.Hour)})
			// another tag keeps the source's listing non-empty whatever
			// is withdrawn of this one
			w.publish(dir, spec{vo: "atlas", tag: tag + "-other"})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = retire
			o.Servers = unusedServers{}
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("first pass: %+v", r.Outcomes)
			}
			if im := e.get(t, cur.id); im.Status != StatusActive || im.Hidden {
				t.Fatalf("current image: %s hidden %v", im.Status, im.Hidden)
			}
			// a replay of the older bundle beside the newer one changes
			// nothing: it stays superseded
			run(t, o)
			if retire == "hide" {
				if im := e.get(t, old.id); !im.Hidden {
					t.Fatal("the superseded image is visible while the newer one is listed")
				}
			}
			// the source withdraws the newest bundle
			removeBundle(t, cur)
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("pass after the withdrawal: %+v", r.Outcomes)
			}
			switch retire {
			case "hide":
				if im := e.get(t, cur.id); !im.Hidden || im.Status != StatusActive {
					t.Fatalf("withdrawn image: %s hidden %v, want active and hidden", im.Status, im.Hidden)
				}
				if im := e.get(t, old.id); im.Hidden || im.Status != StatusActive {
					t.Fatalf("older image: %s hidden %v, want current again", im.Status, im.Hidden)
				}
			case "delete":
				if _, err := e.admin.Get(ctx, cur.id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("withdrawn image not deleted: %v", err)
				}
				// the superseded one went when the newer came: the tag
				// has no image left; the bundle listed again is too late
				for name, b := range map[string][]byte{cur.name + ".json": cur.desc, cur.name + ".json.p7s": cur.sig} {
					if err := os.WriteFile(filepath.Join(cur.dir, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				run(t, o)
				if _, err := e.admin.Get(ctx, cur.id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a withdrawn and deleted uuid came back: %v", err)
				}
			}
		})
	}
}
