package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestNovaServersInUse asks the real nova-api which images its servers use:
// a server is created from one image (nova-api answers 202; nothing is ever
// scheduled here), and InUse says yes for it and no for another image.
func TestNovaServersInUse(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img := c.ImageClient(t, ostest.CloudAdmin)
	used, unused := uuid.NewString(), uuid.NewString()
	for _, id := range []string{used, unused} {
		if _, err := glance.Create(ctx, img, glance.CreateOpts{ID: id, Name: "nova-in-use " + id[:8], DiskFormat: "raw", ContainerFormat: "bare"}).Extract(); err != nil {
			t.Fatal(err)
		}
		if err := glance.Upload(ctx, img, id, bytes.NewReader(make([]byte, 4096))).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = glance.Delete(context.Background(), img, id).ExtractErr() })
	}
	nova := c.ComputeClient(t, ostest.CloudAdmin)
	flavor := "in-use-" + uuid.NewString()[:8]
	fl, err := flavors.Create(ctx, nova, flavors.CreateOpts{Name: flavor, RAM: 64, VCPUs: 1, Disk: gophercloud.IntToPointer(1)}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flavors.Delete(context.Background(), nova, fl.ID).ExtractErr() })
	var created struct {
		Server struct {
			ID string `json:"id"`
		} `json:"server"`
	}
	body := map[string]any{"server": map[string]any{"name": "in-use", "imageRef": used, "flavorRef": fl.ID, "networks": "none"}}
	resp, err := nova.Post(ctx, nova.ServiceURL("servers"), body, &created, &gophercloud.RequestOpts{
		OkCodes: []int{202}, MoreHeaders: map[string]string{"X-OpenStack-Nova-API-Version": "2.37"}})
	if err != nil {
		t.Fatalf("server create: %v", err)
	}
	_ = resp
	t.Cleanup(func() { _, _ = nova.Delete(context.Background(), nova.ServiceURL("servers", created.Server.ID), nil) })

	n := &novaServers{sc: nova}
	for id, want := range map[string]bool{used: true, unused: false} {
		inUse, known, err := n.InUse(ctx, id)
		if err != nil || !known || inUse != want {
			t.Errorf("InUse(%s) = %v, %v, %v; want %v, known", id[:8], inUse, known, err, want)
		}
	}
	// a user without the right to list every project's servers can't tell
	demo := &novaServers{sc: c.ComputeClient(t, ostest.CloudDemo)}
	if _, known, _ := demo.InUse(ctx, used); known {
		t.Log("the demo user may list all projects' servers here; nothing to check")
	}
}
