package ostest

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

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
