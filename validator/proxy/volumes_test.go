package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// standInCinder is a stand-in Volumes for the gate's own handling of boot
// volumes. It maps volume and snapshot ids to image ids. The command's
// Volumes, against the real cinder-api of tests/openstack, is tested by
// cmd/imagetrust TestProxyCheckImageCinder.
type standInCinder struct {
	volumes, snapshots map[string]string
	down               bool
	// tokens are the tokens it was asked with, in turn (asked and read
	// under mu)
	mu     sync.Mutex
	tokens []string
}

func (c *standInCinder) asked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.tokens)
}

func (c *standInCinder) VolumeImage(_ context.Context, token, id string) (string, error) {
	c.mu.Lock()
	c.tokens = append(c.tokens, token)
	c.mu.Unlock()
	return c.get(c.volumes, id)
}

func (c *standInCinder) SnapshotImage(_ context.Context, token, id string) (string, error) {
	c.mu.Lock()
	c.tokens = append(c.tokens, token)
	c.mu.Unlock()
	return c.get(c.snapshots, id)
}

func (c *standInCinder) get(m map[string]string, id string) (string, error) {
	if c.down {
		return "", errors.New("cinder: connection refused")
	}
	img, ok := m[id]
	if !ok {
		return "", fmt.Errorf("volume %s: %w", id, ErrNotFound)
	}
	if img == "creating" {
		return "", fmt.Errorf("volume %s is creating: %w", id, ErrVolumeNotReady)
	}
	return img, nil
}

const (
	volGood     = "d0000000-0000-4000-8000-000000000001"
	volRevoked  = "d0000000-0000-4000-8000-000000000002"
	volBlank    = "d0000000-0000-4000-8000-000000000003"
	volUnknown  = "d0000000-0000-4000-8000-000000000004"
	volSnapshot = "d0000000-0000-4000-8000-000000000005"
	volOdd      = "d0000000-0000-4000-8000-000000000006"
	volForeign  = "d0000000-0000-4000-8000-000000000007"
	volAlias    = "d0000000-0000-4000-8000-000000000008"
	volTwin     = "d0000000-0000-4000-8000-000000000009"
	volOneImage = "d0000000-0000-4000-8000-00000000000a"
	volSeenTwin = "d0000000-0000-4000-8000-00000000000b"
	volCreating = "d0000000-0000-4000-8000-00000000000c"
	snapGood    = "e0000000-0000-4000-8000-000000000001"
	snapRevoked = "e0000000-0000-4000-8000-000000000002"
)

func TestVolumeBoots(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	cinder := &standInCinder{
		volumes: map[string]string{volGood: idGood, volRevoked: idRevoked, volBlank: "",
			volOdd: "el9", volForeign: idSnapshot, volAlias: idAlias,
			volTwin: strings.ToUpper(idGood), volOneImage: strings.ToUpper(idNewer), volSeenTwin: strings.ToUpper(idSharedA),
			volCreating: "creating"},
		snapshots: map[string]string{snapGood: idGood, snapRevoked: idRevoked},
	}
	// Glance on MySQL finds an image by any case of its id: there the
	// upper-case id Cinder recorded is the catalogue image itself
	newer, _ := f.glance.GetImage(t.Context(), idNewer)
	f.glance.images[strings.ToUpper(idNewer)] = newer
	// on sqlite and PostgreSQL an upper-case id is another image, a
	// user's; one the gate can see (community visibility)
	f.glance.put(&Image{ID: strings.ToUpper(idSharedA), Owner: userProject, Status: "active", Properties: map[string]string{}})
	var hooked []*Image
	newG := func(policy string, vols Volumes) *gateEnv {
		return newGate(t, f, nova.srv.URL, func(o *Options) {
			o.VolumePolicy, o.Volumes = policy, vols
			o.UserData = func(b Boot, _ string, _ bool) (string, bool, error) {
				hooked = append(hooked, b.Image)
				return "", false, nil
			}
		})
	}
	withCinder, allowBlank, noCinder := newG(VolumeRefuse, cinder), newG(VolumeAllow, cinder), newG(VolumeRefuse, nil)
	vol := func(st, id string) string {
		return bdmBody(`{"source_type":"` + st + `","uuid":"` + id + `","boot_index":0,"destination_type":"volume"}`)
	}
	smuggled := func(st, uuid, key, id string) string {
		u := ""
		if uuid != "" {
			u = `"uuid":"` + uuid + `",`
		}
		return bdmBody(`{"source_type":"` + st + `",` + u + `"destination_type":"volume","volume_size":1,"boot_index":0,"` + key + `":"` + id + `"}`)
	}
	legacy := func(key, id string) string {
		return `{"server":{"name":"vm","flavorRef":"1","block_device_mapping":[{"device_name":"vda","` + key + `":"` + id + `"}]}}`
	}
	cases := []struct {
		name  string
		g     *gateEnv
		body  string
		want  int
		fault string
		// hook is the image contextualised (nil: none) for a forwarded boot
		hook string
	}{
		{"ok volume made from a good image", withCinder, vol("volume", volGood), 202, "", idGood},
		{"ok snapshot of a volume made from a good image", withCinder, vol("snapshot", snapGood), 202, "", idGood},
		{"ok legacy volume_id", withCinder, legacy("volume_id", volGood), 202, "", idGood},
		{"ok legacy snapshot_id", withCinder, legacy("snapshot_id", snapGood), 202, "", idGood},
		{"ok blank volume under allow", allowBlank, vol("volume", volBlank), 202, "", ""},
		{"ok volume made from an upper-case id Glance finds as the catalogue image", withCinder, vol("volume", volOneImage), 202, "", idNewer},
		{"fail volume made from an upper-case twin of a catalogue id", withCinder, vol("volume", volTwin), 403, "forbidden", ""},
		{"fail volume made from a visible upper-case twin of a catalogue id", withCinder, vol("volume", volSeenTwin), 403, "forbidden", ""},
		{"fail volume made from a revoked image", withCinder, vol("volume", volRevoked), 403, "forbidden", ""},
		{"fail revoked image under allow too", allowBlank, vol("volume", volRevoked), 403, "forbidden", ""},
		{"fail snapshot of a revoked image", withCinder, vol("snapshot", snapRevoked), 403, "forbidden", ""},
		{"fail legacy snapshot of a revoked image", withCinder, legacy("snapshot_id", snapRevoked), 403, "forbidden", ""},
		{"fail blank volume under refuse", withCinder, vol("volume", volBlank), 403, "forbidden", ""},
		{"fail unknown volume", withCinder, vol("volume", volUnknown), 400, "badRequest", ""},
		// Cinder names the image once it has copied it: not "made from
		// no image" meanwhile
		{"fail volume still being made", withCinder, vol("volume", volCreating), 400, "badRequest", ""},
		{"fail volume still being made under allow too", allowBlank, vol("volume", volCreating), 400, "badRequest", ""},
		{"fail image_id not a uuid is no tag", withCinder, vol("volume", volOdd), 403, "forbidden", ""},
		{"fail image outside the catalogue", withCinder, vol("volume", volForeign), 403, "forbidden", ""},
		{"fail volume naming an alias entry", withCinder, vol("volume", volAlias), 403, "forbidden", ""},
		{"fail volume without uuid", withCinder, bdmBody(`{"source_type":"volume","boot_index":0,"destination_type":"volume"}`), 400, "badRequest", ""},
		{"fail no Cinder: the policy", noCinder, vol("volume", volGood), 403, "forbidden", ""},
		// Nova's v2 schema admits the legacy volume_id and snapshot_id keys,
		// and its driver attaches the volume a volume_id names rather than
		// create one, whatever the source type
		{"fail blank source with the volume_id of a revoked image's volume", withCinder, smuggled("blank", "", "volume_id", volRevoked), 403, "forbidden", ""},
		{"fail image source with the volume_id of a revoked image's volume", withCinder, smuggled("image", idGood, "volume_id", volRevoked), 403, "forbidden", ""},
		{"fail snapshot source with the volume_id of a revoked image's volume", withCinder, smuggled("snapshot", snapGood, "volume_id", volRevoked), 403, "forbidden", ""},
		{"fail blank source with the snapshot_id of a revoked image", withCinder, smuggled("blank", "", "snapshot_id", snapRevoked), 403, "forbidden", ""},
		{"fail blank source with a volume_id: the policy", noCinder, smuggled("blank", "", "volume_id", volGood), 403, "forbidden", ""},
		{"fail blank source with a volume_id that is no string", withCinder, bdmBody(`{"source_type":"blank","destination_type":"volume","volume_size":1,"boot_index":0,"volume_id":7}`), 400, "badRequest", ""},
		{"ok image source with the volume_id of a good image's volume", withCinder, smuggled("image", idGood, "volume_id", volGood), 202, "", idGood},
		// a legacy entry keeps both keys, and Nova attaches volume_id
		{"fail legacy snapshot_id beside the volume_id of a revoked image's volume", withCinder,
			`{"server":{"name":"vm","flavorRef":"1","block_device_mapping":[{"device_name":"vda","snapshot_id":"` + snapGood + `","volume_id":"` + volRevoked + `"}]}}`, 403, "forbidden", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := nova.count()
			hooked = nil
			resp, body := do(t, http.MethodPost, c.g.srv.URL+"/v2.1/servers", "application/json", c.body, nil)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
			}
			if c.want != 202 {
				name, _, msg := fault(t, body)
				if name != c.fault || msg == "" {
					t.Errorf("fault %s %q", name, msg)
				}
				if strings.Contains(c.name, "still being made") && !strings.Contains(msg, "is still being made") {
					t.Errorf("a volume still being made is refused as %q", msg)
				}
				if nova.count() != before {
					t.Error("a refused boot reached Nova")
				}
				return
			}
			if len(hooked) != 1 || (c.hook == "") != (hooked[0] == nil) || hooked[0] != nil && hooked[0].ID != c.hook {
				t.Errorf("contextualised %v, want %q", hooked, c.hook)
			}
			rec, _ := nova.last()
			if strings.Contains(c.body, volGood) && !strings.Contains(string(rec.Body), volGood) {
				t.Errorf("the volume id was not forwarded: %s", rec.Body)
			}
		})
	}

	t.Run("ok Cinder asked with the token Nova reads", func(t *testing.T) {
		// keystonemiddleware reads X-Auth-Token, else X-Storage-Token
		for _, hdr := range []map[string]string{{"X-Auth-Token": "gAAAAauth"}, {"X-Storage-Token": "gAAAAstorage"}} {
			cinder.mu.Lock()
			cinder.tokens = nil
			cinder.mu.Unlock()
			if resp, b := do(t, http.MethodPost, withCinder.srv.URL+"/v2.1/servers", "application/json", vol("volume", volGood), hdr); resp.StatusCode != 202 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			want := hdr["X-Auth-Token"] + hdr["X-Storage-Token"]
			if got := cinder.asked(); len(got) != 1 || got[0] != want {
				t.Errorf("Cinder asked with %q, want %q", got, want)
			}
		}
	})
	t.Run("fail Cinder down", func(t *testing.T) {
		down := newG(VolumeAllow, &standInCinder{down: true})
		resp, body := do(t, http.MethodPost, down.srv.URL+"/v2.1/servers", "application/json", vol("volume", volGood), nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("ok unmanaged image boot with a catalogue image's volume beside it gets no context", func(t *testing.T) {
		// the project boots its own image; the volume (made from a
		// catalogue image) is a data disk, and must not pick the context
		g := newGate(t, f, nova.srv.URL, func(o *Options) {
			o.VolumePolicy, o.Volumes, o.UnmanagedProjects = VolumeRefuse, cinder, []string{labProject}
			o.UserData = func(b Boot, _ string, _ bool) (string, bool, error) {
				hooked = append(hooked, b.Image)
				return "", false, nil
			}
		})
		hooked = nil
		body := `{"server":{"name":"vm","flavorRef":"1","imageRef":"` + idSnapshot + `","block_device_mapping":[{"device_name":"vdb","volume_id":"` + volGood + `"}]}}`
		if resp, b := do(t, http.MethodPost, g.srv.URL+"/v2.1/"+labProject+"/servers", "application/json", body, nil); resp.StatusCode != 202 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if len(hooked) != 1 || hooked[0] != nil {
			t.Fatalf("contextualised %v, want none", hooked)
		}
	})
	t.Run("ok a data volume next to an image boot is not asked about", func(t *testing.T) {
		body := `{"server":{"name":"vm","flavorRef":"1","imageRef":"` + idGood + `","block_device_mapping_v2":[` +
			`{"source_type":"image","uuid":"` + idGood + `","boot_index":0,"destination_type":"local"},` +
			`{"source_type":"volume","uuid":"` + volUnknown + `","boot_index":-1,"destination_type":"volume"}]}}`
		if resp, b := do(t, http.MethodPost, withCinder.srv.URL+"/v2.1/servers", "application/json", body, nil); resp.StatusCode != 202 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		// at boot_index 1 it is a boot device (the next one after the
		// root): judged
		body = strings.Replace(body, `"boot_index":-1`, `"boot_index":1`, 1)
		if resp, b := do(t, http.MethodPost, withCinder.srv.URL+"/v2.1/servers", "application/json", body, nil); resp.StatusCode != 400 || !strings.Contains(string(b), "not found") {
			t.Fatalf("volume at boot_index 1: status %d: %s", resp.StatusCode, b)
		}
	})
}
