package crljob

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// TestRevokedWhileUploading: Glance saves, when an upload ends, the image as
// it read it when the upload began, so a flag the CRL job writes while the
// image's data is still being written may be lost, and the image then
// become active as valid. The job reports such an image (in_transit; exit
// 4 for --once, a rerun within crl.TransitRecheck for the daemon), and the
// next run deactivates it. Against the real Glance: an image of the mirror
// project with a catalogue record, its upload held open while the
// Registrar revokes it and the job runs.
func TestRevokedWhileUploading(t *testing.T) {
	s := newSite(t, "a")
	s.publish("d", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// the record the sync would write for d, on a queued image of the
	// mirror project
	cfg, err := config.Load(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	trust, _, err := validator.LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := os.ReadFile(filepath.Join(s.dir, "images", "d.json"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(s.dir, "images", "d.json.p7s"))
	if err != nil {
		t.Fatal(err)
	}
	res := trust.Verify(validator.Input{Descriptor: desc, Signature: sig, Now: time.Now()})
	if !res.Valid {
		t.Fatalf("bundle d: %v", res.Err())
	}
	props, err := validator.RecordProperties(res, desc, sig)
	if err != nil {
		t.Fatal(err)
	}
	props[validator.PropGlobalValidity] = validator.GlobalValid
	id := s.ids["d"]
	if _, err := images.Create(ctx, s.img, images.CreateOpts{ID: id, Name: "d", DiskFormat: "raw", ContainerFormat: "bare", Properties: props}).Extract(); err != nil {
		t.Fatalf("create: %v", err)
	}

	// the upload: half the data, then held open
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() { uploaded <- imagedata.Upload(ctx, s.img, id, pr).ExtractErr() }()
	if _, err := pw.Write(bytes.Repeat([]byte("d"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	for s.image("d").Status != "saving" {
		time.Sleep(100 * time.Millisecond)
	}

	s.revoke("registrar-ca", "--cert", "images/d.json.crt", "--reason", "keyCompromise")
	rep := s.crlRun(4)
	if len(rep.InTransit) != 1 || rep.InTransit[0] != id {
		t.Fatalf("in transit %v, want [%s]: %+v", rep.InTransit, id, rep)
	}
	if got := s.image("d").Properties[crl.PropGlobalValidity]; got != crl.StateRevoked {
		t.Fatalf("while uploading, the flag is %q", got)
	}
	code, out, _ := s.run("crl", "--config", s.cfg, "--once")
	if code != 4 || !bytes.Contains([]byte(out), []byte("still writing their data")) {
		t.Errorf("human report: exit %d:\n%s", code, out)
	}

	// the upload ends: Glance keeps what it read when it began
	if _, err := pw.Write(bytes.Repeat([]byte("d"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-uploaded; err != nil {
		t.Fatalf("upload: %v", err)
	}
	d := s.image("d")
	t.Logf("after the upload: status %s, global validity %q (Glance Zed restores the properties it read when the upload began)", d.Status, d.Properties[crl.PropGlobalValidity])

	rep = s.crlRun(0)
	d = s.image("d")
	if d.Status != "deactivated" || d.Properties[crl.PropGlobalValidity] != crl.StateRevoked || len(rep.InTransit) != 0 {
		t.Fatalf("after the next run: status %s, flag %q, in transit %v", d.Status, d.Properties[crl.PropGlobalValidity], rep.InTransit)
	}
}
