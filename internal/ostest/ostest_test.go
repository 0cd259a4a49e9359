package ostest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestStartGlance(t *testing.T) {
	c := Start(t, Options{})
	if c2 := Start(t, Options{}); c2 != c {
		t.Fatalf("second Start returned another stack: %v", c2)
	}
	for _, cloud := range []string{CloudAdmin, CloudMirror, CloudDemo} {
		t.Run("ok list images as "+cloud, func(t *testing.T) {
			img := c.ImageClient(t, cloud)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := images.List(img, images.ListOpts{}).EachPage(ctx, func(context.Context, pagination.Page) (bool, error) {
				return true, nil
			})
			if err != nil {
				t.Fatalf("listing images: %v", err)
			}
		})
	}
	if c.Env["GLANCE_URL"] != c.GlanceURL || c.Env["MIRROR_USER"] != "imagetrust" {
		t.Fatalf("env not loaded: %v", c.Env)
	}
}

func TestStartNova(t *testing.T) {
	c := Start(t, Options{WithNova: true})
	if c.NovaURL == "" {
		t.Fatal("no NovaURL")
	}
	resp, err := http.Get(c.NovaURL)
	if err != nil {
		t.Fatalf("nova: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("nova answers %s", resp.Status)
	}
	cmp := c.ComputeClient(t, CloudDemo)
	if cmp.Endpoint != c.NovaURL+"/" {
		t.Fatalf("compute endpoint %q, want %q", cmp.Endpoint, c.NovaURL+"/")
	}

	if os.Getenv(EnvState) != "" {
		t.Log("not changing the catalog of a shared stack: other packages use it now")
		return
	}
	const other = "http://127.0.0.1:1/v2.1"
	c.SetComputeEndpoint(t, other)
	defer c.SetComputeEndpoint(t, c.NovaURL)
	if got := c.ComputeClient(t, CloudDemo).Endpoint; got != other+"/" {
		t.Fatalf("public compute endpoint %q, want %q", got, other+"/")
	}
	if c.Env["COMPUTE_PUBLIC_URL"] != other {
		t.Fatalf("COMPUTE_PUBLIC_URL = %q", c.Env["COMPUTE_PUBLIC_URL"])
	}
}

// TestProjectDelete: NewProject's project, user and images (a hidden and
// protected one too) are gone after Project.Delete, which Main runs once
// the tests are done on a stack it did not start (AtExit). Before, the
// projects the tests made (one per glancesync and proxy test process) were
// never deleted, nor their users and images: a shared stack gathered them
// run after run.
func TestProjectDelete(t *testing.T) {
	c := Start(t, Options{})
	ctx := t.Context()
	exitMu.Lock()
	before := len(atExit)
	exitMu.Unlock()
	p := c.NewProject(t, t.TempDir(), "deltest", CloudMirror)
	exitMu.Lock()
	registered := len(atExit) - before
	exitMu.Unlock()
	if want := map[bool]int{true: 0, false: 1}[c.owned]; registered != want {
		t.Errorf("NewProject registered %d clean-ups, want %d (stack started by this process: %v)", registered, want, c.owned)
	}
	var ids []string
	for _, hidden := range []bool{false, true} {
		im, err := images.Create(ctx, p.Image, images.CreateOpts{Name: "deltest", DiskFormat: "raw", ContainerFormat: "bare",
			Hidden: &hidden, Protected: &hidden}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, im.ID)
	}
	if err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	admin := c.ImageClient(t, CloudAdmin)
	for _, id := range ids {
		if _, err := images.Get(ctx, admin, id).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			t.Errorf("image %s after Delete: %v, want 404", id, err)
		}
	}
	if _, err := projects.Get(ctx, p.idc, p.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("project after Delete: %v, want 404", err)
	}
	if _, err := users.Get(ctx, p.idc, p.userID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("user after Delete: %v, want 404", err)
	}
	if err := p.Delete(ctx); err != nil {
		t.Errorf("Delete again: %v, want nil (already gone)", err)
	}
}

// TestRunAtExit: the AtExit functions run last first, each failure is
// written and does not stop the others.
func TestRunAtExit(t *testing.T) {
	exitMu.Lock()
	saved := atExit
	atExit = nil
	exitMu.Unlock()
	defer func() { exitMu.Lock(); atExit = saved; exitMu.Unlock() }()
	t.Setenv(EnvKeep, "")
	var order []int
	AtExit(func() error { order = append(order, 1); return nil })
	AtExit(func() error { order = append(order, 2); return errors.New("boom") })
	AtExit(func() error { order = append(order, 3); return nil })
	var out bytes.Buffer
	runAtExit(&out)
	if fmt.Sprint(order) != "[3 2 1]" {
		t.Errorf("ran %v, want [3 2 1]", order)
	}
	if !strings.Contains(out.String(), "boom") {
		t.Errorf("output %q lacks the failure", out.String())
	}
	runAtExit(&out)
	if len(order) != 3 {
		t.Errorf("ran again: %v", order)
	}
}
