package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

// glanceTestLookup is the Lookup the command layer implements, written
// again here against the real Glance (the package itself never imports
// gophercloud).
type glanceTestLookup struct {
	sc    *gophercloud.ServiceClient
	owner string
}

func toImage(im *images.Image) *Image {
	props := map[string]string{}
	for k, v := range im.Properties {
		if s, ok := v.(string); ok {
			props[k] = s
		}
	}
	return &Image{ID: im.ID, Name: im.Name, Owner: im.Owner, Status: string(im.Status), Visibility: string(im.Visibility), Properties: props}
}

func (g *glanceTestLookup) GetImage(ctx context.Context, id string) (*Image, error) {
	im, err := images.Get(ctx, g.sc, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return toImage(im), nil
}

func (g *glanceTestLookup) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	pages, err := images.List(g.sc, images.ListOpts{Owner: g.owner}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		return nil, err
	}
	var out []*Image
	for i := range all {
		im := toImage(&all[i])
		if im.Properties[validator.PropTag] == tag && (vo == "" || im.Properties[validator.PropVO] == vo) {
			out = append(out, im)
		}
	}
	return out, nil
}

// TestIntegrationNova boots through the gate into a real nova-api (with
// real Keystone and Glance on loopback): a catalogue image by uuid and by
// tag answers 202 from Nova; the same image, revoked, is refused by the gate.
func TestIntegrationNova(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := t.Context()
	f := newFixture(t)
	id := "cccccccc-0000-4000-8000-" + fmt.Sprintf("%012x", time.Now().UnixNano()&0xffffffffffff)
	rec := f.add(imageSpec{id: id, vo: "atlas", tag: fmt.Sprintf("it%d", time.Now().Unix()%100000)})

	mirror := c.ImageClient(t, ostest.CloudMirror)
	res, ok := mirror.ProviderClient.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatal("mirror: not a v3 token")
	}
	proj, err := res.ExtractProject()
	if err != nil {
		t.Fatal(err)
	}
	vis := images.ImageVisibilityPublic
	_, err = images.Create(ctx, mirror, images.CreateOpts{ID: id, Name: rec.Name, DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: &vis, Properties: rec.Properties}).Extract()
	if err != nil {
		t.Fatalf("create image: %v", err)
	}
	t.Cleanup(func() { _ = images.Delete(context.Background(), mirror, id).ExtractErr() })
	if err := imagedata.Upload(ctx, mirror, id, bytes.NewReader(make([]byte, 1024))).ExtractErr(); err != nil {
		t.Fatalf("upload: %v", err)
	}

	admin := c.ComputeClient(t, ostest.CloudAdmin)
	flavorID := fmt.Sprintf("it-%d", time.Now().UnixNano())
	if _, err := flavors.Create(ctx, admin, flavors.CreateOpts{ID: flavorID, Name: flavorID, RAM: 64, VCPUs: 1, Disk: gophercloud.IntToPointer(1)}).Extract(); err != nil {
		t.Fatalf("create flavor: %v", err)
	}
	t.Cleanup(func() { _ = flavors.Delete(context.Background(), admin, flavorID).ExtractErr() })

	nova, _ := url.Parse(strings.TrimSuffix(strings.TrimSuffix(c.NovaURL, "/"), "/v2.1"))
	p, err := New(Options{Upstream: nova, Lookup: &glanceTestLookup{sc: mirror, owner: proj.ID}, Decider: f.trust,
		MirrorProject: proj.ID, CacheTTL: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gate := httptest.NewServer(p)
	defer gate.Close()

	demo := c.ComputeClient(t, ostest.CloudDemo)
	viaGate := *demo
	viaGate.Endpoint = gate.URL + "/v2.1/"
	viaGate.ResourceBase = ""
	viaGate.Microversion = "2.37"
	boot := func(ref string) (string, error) {
		s, err := servers.Create(ctx, &viaGate, servers.CreateOpts{Name: "it", ImageRef: ref, FlavorRef: flavorID, Networks: "none"}, nil).Extract()
		if err != nil {
			return "", err
		}
		t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, s.ID).ExtractErr() })
		return s.ID, nil
	}
	for _, ref := range []string{strings.ToUpper(id), rec.Properties[validator.PropTag], "atlas/" + rec.Properties[validator.PropTag]} {
		if _, err := boot(ref); err != nil {
			t.Fatalf("boot %s through the gate: %v", ref, err)
		}
	}

	_, err = images.Update(ctx, mirror, id, images.UpdateOpts{
		images.UpdateImageProperty{Op: images.ReplaceOp, Name: validator.PropGlobalValidity, Value: "revoked"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	_, err = boot(id)
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) || ue.Actual != http.StatusForbidden || !strings.Contains(string(ue.Body), `"forbidden"`) {
		t.Fatalf("revoked image: %v", err)
	}
}
