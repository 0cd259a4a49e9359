package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
)

// hangingListener accepts connections and never answers on them (a
// Keystone behind a stuck proxy); it returns its address.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// TestNovaCatalogReadBounded: the catalog read at a pass's start
// (BeginPass, catalogFinder) from a Keystone that accepts the connection
// and never answers gives up after catalogTimeout, which is at most
// novaTimeout (a pass waits no longer on it than on one question to
// Nova), as a catalog not read (errCatalogUnread: WARN). The bound is set short here so that the test
// ends soon; what is checked is that the read ends on it, not how long it
// took. Before, the read had authTimeout (2 minutes) whatever novaTimeout
// was: checked by hand, the old catalogFinder against this listener
// returned after 2m0s.
func TestNovaCatalogReadBounded(t *testing.T) {
	if catalogTimeout > novaTimeout {
		t.Errorf("catalogTimeout %v longer than novaTimeout %v", catalogTimeout, novaTimeout)
	}
	old := catalogTimeout
	catalogTimeout = 50 * time.Millisecond
	t.Cleanup(func() { catalogTimeout = old })

	pc, err := openstack.NewClient("http://" + hangingListener(t) + "/v3/")
	if err != nil {
		t.Fatal(err)
	}
	pc.SetToken("a-token")
	find := catalogFinder(&keystoneLogin{pc: pc, eo: gophercloud.EndpointOpts{}})
	// no deadline of its own: only the bound ends the read
	_, err = find(context.Background())
	if !errors.Is(err, errCatalogUnread) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("catalog read from a Keystone that never answers: %v, want errCatalogUnread and the deadline", err)
	}

	// a sync without a compute service: the pass reads the catalog
	logs := &ittestutil.SyncBuffer{}
	n := &novaServers{find: find, log: newLogger(logs, "text", "debug")}
	n.BeginPass(context.Background())
	if n.client() != nil {
		t.Errorf("a compute client after a catalog not read: %v", n.client())
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"cannot read Keystone's catalog") {
		t.Errorf("no WARN line:\n%s", logs.String())
	}
}
