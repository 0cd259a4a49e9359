package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator"
)

func TestCinderID(t *testing.T) {
	for id, want := range map[string]bool{
		"d0000000-0000-4000-8000-000000000001":          true,
		"D0000000-0000-4000-8000-000000000001":          true,
		"d00000000000400080000000000000001":             false, // 33 digits
		"d0000000000040008000000000000001":              true,
		"{d0000000-0000-4000-8000-000000000001}":        false,
		"urn:uuid:d0000000-0000-4000-8000-000000000001": false,
		"d0000000-0000-4000-8000-000000000001/../x":     false,
		"..":                                   false,
		"":                                     false,
		"d0000000-0000-4000-8000-00000000000g": false,
	} {
		if got := cinderID(id); got != want {
			t.Errorf("cinderID(%q) = %v, want %v", id, got, want)
		}
	}
}

// publishCatalogueImage makes a bundle with the demonstration PKI in dir
// (pki init already run) and stores it in Glance as the mirror would: an
// active public image of the mirror project, id = the bundle's uuid,
// carrying its catalogue record.
func publishCatalogueImage(t *testing.T, ctx context.Context, dir, name string, trust *validator.Trust, mirror *gophercloud.ServiceClient) string {
	t.Helper()
	return publishCatalogueImageWith(t, ctx, dir, name, trust, mirror, nil, mirror)
}

// publishCatalogueImageWith is publishCatalogueImage with the data, when
// not nil, instead of the signed image's bytes, uploaded by the first of
// uploaders Glance lets upload (403: the next one).
func publishCatalogueImageWith(t *testing.T, ctx context.Context, dir, name string, trust *validator.Trust, mirror *gophercloud.ServiceClient, data []byte, uploaders ...*gophercloud.ServiceClient) string {
	t.Helper()
	image := bytes.Repeat([]byte(name), 4096)
	if data == nil {
		data = image
	}
	if err := os.WriteFile(filepath.Join(dir, name+".img"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", name+".img", "--vo", "demo", "--tag", "vol-"+name, "-o", name+".json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", name+".json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", name+".json")
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", name+".json")
	desc, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, name+".json.p7s"))
	if err != nil {
		t.Fatal(err)
	}
	res := trust.Verify(validator.Input{Descriptor: desc, Signature: sig, Now: time.Now()})
	if failed := res.Failed(); len(failed) > 0 {
		t.Fatalf("bundle %s does not verify: %+v", name, failed)
	}
	props, err := validator.RecordProperties(res, desc, sig)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UUID string `json:"uuid"`
	}
	if err := json.Unmarshal(desc, &d); err != nil || d.UUID == "" {
		t.Fatalf("descriptor uuid: %v", err)
	}
	if _, err := glance.Create(ctx, mirror, glance.CreateOpts{ID: d.UUID, Name: "check-image " + name, DiskFormat: "raw",
		ContainerFormat: "bare", Visibility: images.ImageVisibilityPublic, Properties: props}).Extract(); err != nil {
		t.Fatalf("create image %s: %v", name, err)
	}
	t.Cleanup(func() { _ = glance.Delete(context.Background(), mirror, d.UUID).ExtractErr() })
	for i, up := range uploaders {
		err := glance.Upload(ctx, up, d.UUID, bytes.NewReader(data)).ExtractErr()
		if i < len(uploaders)-1 && gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
			t.Logf("upload image %s: Glance refuses uploader %d (403), the next one uploads", name, i)
			continue
		}
		if err != nil {
			t.Fatalf("upload image %s: %v", name, err)
		}
		break
	}
	return d.UUID
}

// TestProxyCheckImageCinder runs the command, `imagetrust proxy` with
// proxy.volume_policy = "check-image", in front of the real nova-api, with
// the real Keystone, Glance and cinder-api of tests/openstack: boots from
// Cinder volumes and volume snapshots are judged by the image Cinder says
// they were made from. Volumes are made as Cinder's API alone can make them
// (no cinder-volume runs): created by the demo user, made available by an
// admin (os-reset_status), marked bootable, and given their image metadata
// by an admin (os-set_image_metadata), which is what Cinder itself records
// when it makes a volume from an image.
func TestProxyCheckImageCinder(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true, WithCinder: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// the catalogue: one good image, one the site blacklisted
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	trustCfg, err := itconfig.Load(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	trust, _, err := validator.LoadTrust(trustCfg)
	if err != nil {
		t.Fatal(err)
	}
	mirrorImages := c.ImageClient(t, ostest.CloudMirror)
	good := publishCatalogueImage(t, ctx, dir, "good", trust, mirrorImages)
	bad := publishCatalogueImage(t, ctx, dir, "bad", trust, mirrorImages)
	// a catalogue image the sync created (queued, with its whole record)
	// into which another credential of the mirror project uploaded other
	// bytes: the proxy's own, a reader, which Glance's legacy policy
	// defaults (Zed's) let upload into an image of its project; where
	// Glance runs with etc/glance/policy.yaml, which refuses it, the
	// mirror's own credential stands in for whoever else could
	swapped := publishCatalogueImageWith(t, ctx, dir, "swapped", trust, mirrorImages, bytes.Repeat([]byte("other bytes"), 1024),
		c.ImageClient(t, "proxy"), mirrorImages)
	adminImages := c.ImageClient(t, ostest.CloudAdmin)
	if err := glance.PatchProperties(ctx, adminImages, bad, nil, map[string]string{validator.PropLocalValidity: validator.LocalBlacklist}, nil).Err; err != nil {
		t.Fatalf("blacklist: %v", err)
	}

	// the command, as a site runs it
	cfgPath, listen := proxyConfig(t, dir, fmt.Sprintf("upstream = %q\nvolume_policy = \"check-image\"\ncache_ttl = \"1s\"\n",
		strings.TrimSuffix(strings.TrimSuffix(c.NovaURL, "/"), "/v2.1")))
	gateURL := "http://" + listen
	logs := startProxyCommand(t, c, cfgPath, func() error {
		resp, err := http.Get(gateURL + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if !strings.Contains(logs.String(), "volume_extension:volume_image_metadata:set") {
		t.Errorf("no start-up warning about Cinder's policy:\n%s", logs.String())
	}

	demoVol := c.BlockStorageClient(t, ostest.CloudDemo)
	adminVol := c.BlockStorageClient(t, ostest.CloudAdmin)
	var newVolumeOf func(t *testing.T, owner *gophercloud.ServiceClient, image string, snap bool) (volID, snapID string)
	// newVolume is a bootable, available 1 GiB volume of the demo project
	// made from image (none when empty), with a snapshot when snap.
	newVolume := func(t *testing.T, image string, snap bool) (volID, snapID string) {
		t.Helper()
		return newVolumeOf(t, demoVol, image, snap)
	}
	newVolumeOf = func(t *testing.T, demoVol *gophercloud.ServiceClient, image string, snap bool) (volID, snapID string) {
		t.Helper()
		v, err := volumes.Create(ctx, demoVol, volumes.CreateOpts{Size: 1, Name: "check-image"}, nil).Extract()
		if err != nil {
			t.Fatalf("create volume: %v", err)
		}
		hosted := false
		// The volume and its snapshots are gone, and their quota given
		// back, before the test ends: a leak would use up the project's
		// quota (10 volumes) after a few runs on one stack.
		t.Cleanup(func() {
			ctx := context.Background()
			_ = volumes.ResetStatus(ctx, adminVol, v.ID, volumes.ResetStatusOpts{Status: "available", AttachStatus: "detached"}).ExtractErr()
			if err := volumes.Delete(ctx, adminVol, v.ID, volumes.DeleteOpts{Cascade: true}).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				t.Errorf("delete volume %s: %v", v.ID, err)
			}
			if hosted {
				// cinder-api left it "deleting" for the cinder-volume
				// this stack does not run
				c.FinishCinderDeletes(t, v.ID)
			}
			waitVolumeGone(t, adminVol, v.ID)
		})
		if err := volumes.ResetStatus(ctx, adminVol, v.ID, volumes.ResetStatusOpts{Status: "available"}).ExtractErr(); err != nil {
			t.Fatalf("reset status: %v", err)
		}
		if err := volumes.SetBootable(ctx, demoVol, v.ID, volumes.BootableOpts{Bootable: true}).ExtractErr(); err != nil {
			t.Fatalf("set bootable: %v", err)
		}
		if image != "" {
			if err := volumes.SetImageMetadata(ctx, adminVol, v.ID, volumes.ImageMetadataOpts{Metadata: map[string]string{"image_id": image}}).ExtractErr(); err != nil {
				t.Fatalf("set image metadata: %v", err)
			}
		}
		if !snap {
			return v.ID, ""
		}
		// Cinder snapshots only volumes with a host, which its scheduler
		// would have chosen; none runs here, so one is written into
		// cinder-api's database.
		out, err := exec.Command("/usr/bin/python3", "-c", `import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("UPDATE volumes SET host = 'loopback@fake#fake' WHERE id = ?", (sys.argv[2],))
db.commit()`, filepath.Join(c.StateDir, "cinder", "cinder.sqlite"), v.ID).CombinedOutput()
		if err != nil {
			t.Fatalf("setting the volume's host: %v\n%s", err, out)
		}
		hosted = true
		s, err := snapshots.Create(ctx, demoVol, snapshots.CreateOpts{VolumeID: v.ID, Name: "check-image"}).Extract()
		if err != nil {
			t.Fatalf("create snapshot: %v", err)
		}
		if err := snapshots.ResetStatus(ctx, adminVol, s.ID, snapshots.ResetStatusOpts{Status: "available"}).ExtractErr(); err != nil {
			t.Fatalf("reset snapshot status: %v", err)
		}
		return v.ID, s.ID
	}

	// the site's Cinder policy (etc/cinder/policy.yaml under make test):
	// a member may not relabel a volume
	t.Run("policy on volume_image_metadata", func(t *testing.T) {
		v, _ := newVolume(t, "", false)
		err := volumes.SetImageMetadata(ctx, demoVol, v, volumes.ImageMetadataOpts{Metadata: map[string]string{"image_id": good}}).ExtractErr()
		switch policy := c.Env["CINDER_POLICY"]; {
		case policy != "" && !gophercloud.ResponseCodeIs(err, http.StatusForbidden):
			t.Fatalf("under %s a member set a volume's image_id: %v", policy, err)
		case policy == "" && err != nil:
			t.Fatalf("under Cinder's default policy: %v", err)
		case policy == "":
			t.Log("Cinder runs with its default policy: a project member may set volume_image_metadata (what etc/cinder/policy.yaml forbids)")
		}
	})
	// nor rewrite it from another image (reimage), nor put a snapshot's
	// content back under the volume's current label (revert)
	t.Run("policy on reimage and revert", func(t *testing.T) {
		policy := c.Env["CINDER_POLICY"]
		if policy == "" {
			t.Skip("Cinder runs with its default policy")
		}
		v, s := newVolume(t, "", true)
		for _, a := range []struct {
			name string
			body map[string]any
		}{
			{"os-reimage", map[string]any{"os-reimage": map[string]any{"image_id": good}}},
			{"os-revert", map[string]any{"revert": map[string]any{"snapshot_id": s}}},
		} {
			_, err := demoVol.Post(ctx, demoVol.ServiceURL("volumes", v, "action"), a.body, nil, &gophercloud.RequestOpts{
				MoreHeaders: map[string]string{"OpenStack-API-Version": "volume 3.68"}, OkCodes: []int{202}})
			if !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
				t.Errorf("under %s a member's %s: %v", policy, a.name, err)
			}
		}
	})

	admin := c.ComputeClient(t, ostest.CloudAdmin)
	flavorName := "check-image-" + uuid.NewString()[:8]
	fl, err := flavors.Create(ctx, admin, flavors.CreateOpts{Name: flavorName, RAM: 64, VCPUs: 1, Disk: gophercloud.IntToPointer(1)}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flavors.Delete(context.Background(), admin, fl.ID).ExtractErr() })
	demoNova := c.ComputeClient(t, ostest.CloudDemo)
	viaGate := *demoNova
	viaGate.Endpoint, viaGate.ResourceBase = gateURL+"/v2.1/", ""
	// bootServer creates a server through the gate with the fields of
	// server added to a name, the flavor and no network; it returns the
	// status and the body (the server's id when created, deleted at the
	// end).
	bootServer := func(t *testing.T, server map[string]any) (int, string) {
		t.Helper()
		server["name"], server["flavorRef"], server["networks"] = "check-image", fl.ID, "none"
		body := map[string]any{"server": server}
		var created struct {
			Server struct {
				ID string `json:"id"`
			} `json:"server"`
		}
		_, err := viaGate.Post(ctx, viaGate.ServiceURL("servers"), body, &created, &gophercloud.RequestOpts{
			OkCodes: []int{http.StatusAccepted}, MoreHeaders: map[string]string{"X-OpenStack-Nova-API-Version": "2.37"}})
		var ue gophercloud.ErrUnexpectedResponseCode
		switch {
		case errors.As(err, &ue):
			return ue.Actual, string(ue.Body)
		case err != nil:
			t.Fatalf("boot: %v", err)
		}
		t.Cleanup(func() {
			_, _ = demoNova.Delete(context.Background(), demoNova.ServiceURL("servers", created.Server.ID), nil)
		})
		return http.StatusAccepted, created.Server.ID
	}
	// boot creates a server through the gate whose boot disk is the volume
	// or snapshot id.
	boot := func(t *testing.T, sourceType, id string) (int, string) {
		t.Helper()
		return bootServer(t, map[string]any{
			"block_device_mapping_v2": []map[string]any{{"source_type": sourceType, "uuid": id, "boot_index": 0, "destination_type": "volume"}}})
	}

	// a demo user's image under the upper-case spelling of the good
	// image's id: another image on this Glance (sqlite tells the ids apart
	// by case), whose bytes a volume made from it would hold
	twin := strings.ToUpper(good)
	if _, err := images.Create(ctx, c.ImageClient(t, ostest.CloudDemo), images.CreateOpts{ID: twin, Name: "twin", DiskFormat: "raw", ContainerFormat: "bare"}).Extract(); err != nil {
		t.Fatalf("creating the upper-case twin: %v", err)
	}

	cases := []struct {
		name       string
		image      string // the volume's image_id; "" none
		sourceType string // volume or snapshot
		id         string // a fixed id instead of a new volume
		admins     bool   // the volume is the admin project's, not the caller's
		want       int
		fault      string // the refusal's fault name and a part of its message
		says       string
	}{
		{name: "ok volume made from a catalogue image", image: good, sourceType: "volume", want: 202},
		{name: "ok snapshot of a volume made from a catalogue image", image: good, sourceType: "snapshot", want: 202},
		{name: "fail volume made from a blacklisted image", image: bad, sourceType: "volume", want: 403, fault: "forbidden", says: "blacklisted"},
		{name: "fail snapshot of a volume made from a blacklisted image", image: bad, sourceType: "snapshot", want: 403, fault: "forbidden", says: "blacklisted"},
		{name: "fail volume made from a catalogue image whose data in Glance is not the signed image", image: swapped, sourceType: "volume", want: 403, fault: "forbidden", says: "is not the signed sha512"},
		{name: "fail volume made from no image", sourceType: "volume", want: 403, fault: "forbidden", says: "not made from an image"},
		{name: "fail volume made from an upper-case twin of a catalogue image", image: twin, sourceType: "volume", want: 403, fault: "forbidden", says: "not the site's catalogue image"},
		{name: "fail volume made from an image outside the catalogue", image: uuid.NewString(), sourceType: "volume", want: 404, fault: "itemNotFound", says: "not in the site's image catalogue"},
		{name: "fail unknown volume", sourceType: "volume", id: uuid.NewString(), want: 400, fault: "badRequest", says: "was not found"},
		{name: "fail unknown snapshot", sourceType: "snapshot", id: uuid.NewString(), want: 400, fault: "badRequest", says: "was not found"},
		{name: "fail volume id that is no uuid", sourceType: "volume", id: "..", want: 400, fault: "badRequest", says: "was not found"},
		// the gate asks Cinder with the caller's token: another project's
		// volume, even one made from a good image, is not the caller's to boot
		{name: "fail another project's volume made from a catalogue image", image: good, sourceType: "volume", admins: true, want: 400, fault: "badRequest", says: "was not found"},
	}
	// a user's volume made from a catalogue image: Cinder records the
	// image only once cinder-volume has copied it (none runs here: it
	// stays creating), and the user who boots it at once must not read
	// that it was made from no image
	t.Run("fail volume still being made from a catalogue image", func(t *testing.T) {
		v, err := volumes.Create(ctx, demoVol, volumes.CreateOpts{Size: 1, Name: "check-image", ImageID: good}, nil).Extract()
		if err != nil {
			t.Fatalf("create volume: %v", err)
		}
		t.Cleanup(func() {
			ctx := context.Background()
			_ = volumes.ResetStatus(ctx, adminVol, v.ID, volumes.ResetStatusOpts{Status: "available", AttachStatus: "detached"}).ExtractErr()
			if err := volumes.Delete(ctx, adminVol, v.ID, volumes.DeleteOpts{Cascade: true}).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				t.Errorf("delete volume %s: %v", v.ID, err)
			}
			waitVolumeGone(t, adminVol, v.ID)
		})
		if got, err := volumes.Get(ctx, demoVol, v.ID).Extract(); err != nil || got.Status != "creating" || got.VolumeImageMetadata["image_id"] != "" {
			t.Fatalf("the volume is not one still being made: %+v %v", got, err)
		}
		code, body := boot(t, "volume", v.ID)
		if code != http.StatusBadRequest || !strings.Contains(body, "is still being made") || !strings.Contains(body, `"badRequest"`) {
			t.Fatalf("status %d: %s", code, body)
		}
	})

	// the same images booted by imageRef
	for _, tc := range []struct {
		name, image string
		want        int
		says        string
	}{
		{name: "ok imageRef of a catalogue image", image: good, want: http.StatusAccepted},
		{name: "fail imageRef of a catalogue image whose data in Glance is not the signed image", image: swapped, want: http.StatusForbidden, says: "is not the signed sha512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := bootServer(t, map[string]any{"imageRef": tc.image})
			if status != tc.want || status != http.StatusAccepted && !strings.Contains(body, tc.says) {
				t.Fatalf("status %d, want %d saying %q: %s", status, tc.want, tc.says, body)
			}
		})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			if id == "" && tc.admins {
				id, _ = newVolumeOf(t, adminVol, tc.image, false)
			}
			if id == "" {
				vol, snap := newVolume(t, tc.image, tc.sourceType == "snapshot")
				id = vol
				if snap != "" {
					id = snap
				}
			}
			code, body := boot(t, tc.sourceType, id)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			if tc.want == http.StatusAccepted {
				if body == "" {
					t.Fatal("Nova answered 202 without a server id")
				}
				return
			}
			var fault map[string]struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal([]byte(body), &fault); err != nil {
				t.Fatalf("fault %q: %v", body, err)
			}
			if f, ok := fault[tc.fault]; !ok || !strings.Contains(f.Message, tc.says) {
				t.Errorf("want %s saying %q, got %s", tc.fault, tc.says, body)
			}
		})
	}
}

// TestProjectlessEndpoint: the proxy's project, rendered into the
// block-storage endpoint by Keystone, is dropped; nothing else is.
func TestProjectlessEndpoint(t *testing.T) {
	for _, tc := range []struct{ name, endpoint, project, want string }{
		{"ok project id dropped", "http://c:8776/v3/0123abcd/", "0123abcd", "http://c:8776/v3/"},
		{"ok without trailing slash", "http://c:8776/v3/0123abcd", "0123abcd", "http://c:8776/v3/"},
		{"ok endpoint without project id", "http://c/volume/v3/", "0123abcd", "http://c/volume/v3/"},
		{"ok another project's id kept", "http://c:8776/v3/ffff/", "0123abcd", "http://c:8776/v3/ffff/"},
		{"ok project unknown", "http://c:8776/v3/0123abcd/", "", "http://c:8776/v3/0123abcd/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := projectlessEndpoint(tc.endpoint, tc.project); got != tc.want {
				t.Errorf("projectlessEndpoint(%q, %q) = %q, want %q", tc.endpoint, tc.project, got, tc.want)
			}
		})
	}
}

// proxyConfig writes dir/pki/proxy.toml: the configuration `imagetrust pki
// init` wrote in dir/pki, then a [proxy] table listening on a free loopback
// port, with the lines of rest. It returns the file and the address.
func proxyConfig(t *testing.T, dir, rest string) (cfgPath, listen string) {
	t.Helper()
	listen = testutil.FreeAddr(t)
	cfgText, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgText = fmt.Appendf(cfgText, "\n[proxy]\nlisten = %q\n%s", listen, rest)
	cfgPath = filepath.Join(dir, "pki", "proxy.toml")
	if err := os.WriteFile(cfgPath, cfgText, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, listen
}

// startProxyCommand runs `imagetrust proxy --config cfgPath --cloud mirror`
// in this process against c until the test ends, waits until ready
// succeeds (at most a minute), and returns the command's log.
func startProxyCommand(t *testing.T, c *ostest.Cloud, cfgPath string, ready func() error) *testutil.SyncBuffer {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	vars := map[string]string{"OS_CLIENT_CONFIG_FILE": c.CloudsYAML}
	go func() {
		done <- run(pctx, &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: logs, getenv: func(k string) string { return vars[k] }},
			[]string{"proxy", "--config", cfgPath, "--cloud", ostest.CloudMirror})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the proxy did not stop")
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(time.Minute); ; {
		select {
		case code := <-done:
			t.Fatalf("imagetrust proxy exited %d:\n%s", code, logs.String())
		default:
		}
		if ready() == nil {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not get ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitVolumeGone waits (a minute at most) until Cinder no longer has
// volume id, and fails t if it still has.
func waitVolumeGone(t *testing.T, sc *gophercloud.ServiceClient, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		v, err := volumes.Get(ctx, sc, id).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return
		}
		select {
		case <-ctx.Done():
			status := ""
			if v != nil {
				status = v.Status
			}
			t.Errorf("volume %s still there after its deletion (status %q, %v): it holds the project's volume quota", id, status, err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
