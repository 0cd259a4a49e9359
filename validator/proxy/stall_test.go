package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stalledService is a Glance, Keystone and Cinder that accept every call
// and never answer: each call returns only when its context ends.
type stalledService struct{ calls atomic.Int32 }

func (s *stalledService) wait(ctx context.Context) error {
	s.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (s *stalledService) GetImage(ctx context.Context, _ string) (*Image, error) {
	return nil, s.wait(ctx)
}

func (s *stalledService) ListTag(ctx context.Context, _, _ string) ([]*Image, error) {
	return nil, s.wait(ctx)
}

func (s *stalledService) Validate(ctx context.Context, _ string) (*Caller, error) {
	return nil, s.wait(ctx)
}

func (s *stalledService) VolumeImage(ctx context.Context, _, _ string) (string, error) {
	return "", s.wait(ctx)
}

func (s *stalledService) SnapshotImage(ctx context.Context, _, _ string) (string, error) {
	return "", s.wait(ctx)
}

// TestStalledServices: a Glance, Keystone or Cinder that never answers
// fails each decision after Options.LookupTimeout (never allows it), and
// the next boot of the same image or token asks again rather than waiting
// on the first call for ever. The client's own timeout is only a bound on
// the test, far above LookupTimeout.
func TestStalledServices(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	glance, keystone, cinder := &stalledService{}, &stalledService{}, &stalledService{}
	stalled := map[string]struct {
		g    *gateEnv
		svc  *stalledService
		body string
		hdr  map[string]string
	}{
		"glance": {newGate(t, f, nova.srv.URL, func(o *Options) { o.Lookup, o.LookupTimeout = glance, 100*time.Millisecond }),
			glance, serverBody(idGood), nil},
		"keystone": {newGate(t, f, nova.srv.URL, func(o *Options) { o.Identity, o.LookupTimeout = keystone, 100*time.Millisecond }),
			keystone, serverBody(idGood), map[string]string{"X-Auth-Token": tokAlice}},
		"cinder": {newGate(t, f, nova.srv.URL, func(o *Options) { o.Volumes, o.LookupTimeout = cinder, 100*time.Millisecond }),
			cinder, bdmBody(`{"source_type":"volume","uuid":"` + volGood + `","boot_index":0,"destination_type":"volume"}`), nil},
	}
	client := &http.Client{Timeout: 20 * time.Second}
	for name, s := range stalled {
		t.Run("fail "+name+" never answers", func(t *testing.T) {
			for i := 1; i <= 2; i++ {
				before := nova.count()
				req, _ := http.NewRequest(http.MethodPost, s.g.srv.URL+"/v2.1/servers", strings.NewReader(s.body))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range s.hdr {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("boot %d: %v", i, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusBadGateway {
					t.Errorf("boot %d: status %d", i, resp.StatusCode)
				}
				if nova.count() != before {
					t.Errorf("boot %d reached Nova", i)
				}
				if got := s.svc.calls.Load(); got != int32(i) {
					t.Errorf("boot %d: %d calls", i, got)
				}
			}
		})
	}
}
