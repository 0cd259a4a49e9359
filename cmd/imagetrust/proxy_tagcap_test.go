package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator"
)

// TestGlanceLookupTagCap: the proxy's tag lookup reads every page of a
// tag, newest first by Glance's created_at, and at most its cap: with more
// images it keeps the newest ones and logs a warning; with exactly the cap
// or fewer it keeps all and warns of nothing. Against the real Glance,
// with a small cap (and so pages of that size, several of them).
func TestGlanceLookupTagCap(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := map[string]string{"OS_CLOUD": ostest.CloudMirror, "OS_CLIENT_CONFIG_FILE": c.CloudsYAML}
	sc, project, err := openImageClient(ctx, "", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	const vo, n = "atlas", 7
	tag := "cap-" + uuid.NewString()[:8]
	// created one after the other: newest last
	var created []string
	for i := range n {
		id := uuid.NewString()
		if _, err := glance.Create(ctx, sc, glance.CreateOpts{ID: id, Name: tag, DiskFormat: "raw", ContainerFormat: "bare", Visibility: "private",
			Properties: map[string]string{validator.PropTag: tag, validator.PropVO: vo}}).Extract(); err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		t.Cleanup(func() { _ = glance.Delete(context.Background(), sc, id).ExtractErr() })
		created = append(created, id)
	}
	newestFirst := make([]string, n)
	for i, id := range created {
		newestFirst[n-1-i] = id
	}
	for _, tc := range []struct {
		name string
		cap  int
		want int
		warn bool
	}{
		{"ok fewer than the cap", 10, n, false},
		{"ok exactly the cap", n, n, false},
		{"ok cut at the cap, the newest kept", 3, 3, true},
		{"ok cut at one", 1, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			g := &glanceLookup{sc: sc, owner: project, tagCap: tc.cap, log: slog.New(slog.NewTextHandler(&logs, nil))}
			imgs, err := g.ListTag(ctx, vo, tag)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, im := range imgs {
				got = append(got, im.ID)
			}
			if strings.Join(got, " ") != strings.Join(newestFirst[:tc.want], " ") {
				t.Errorf("read %v, want the %d newest, newest first: %v", got, tc.want, newestFirst[:tc.want])
			}
			warned := strings.Contains(logs.String(), "tag lookup cut") && strings.Contains(logs.String(), "tag="+tag)
			if warned != tc.warn {
				t.Errorf("warning logged %v, want %v:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}
