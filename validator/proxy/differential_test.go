package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// novaRaw sends one raw request to nova-api (a fresh connection) and reads
// its answer.
func novaRaw(t *testing.T, hostport, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestMicroversionMatchesNova asks the stack's nova-api (eventlet, webob,
// microversion-parse) which compute microversion it reads from header
// values (it names it in its answer's OpenStack-API-Version, or answers
// 400) and compares requestMicroversion's reading. The gate decides by it
// whether a rebuild's user_data is contextualised: "compute\xa02.57" was
// 2.1 to the gate and 2.57 to Nova (Python's whitespace), so the rebuild's
// user_data reached the server without the site's part.
func TestMicroversionMatchesNova(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	token := c.ComputeClient(t, ostest.CloudDemo).ProviderClient.Token()
	nu, err := url.Parse(c.NovaURL)
	if err != nil {
		t.Fatal(err)
	}
	// nova-api takes a rebuild's user_data under "compute\xa02.57": the
	// schema of 2.57 admits it (the unknown server then answers 404), that
	// of 2.56 does not (400)
	for v, want := range map[string]int{"compute\xa02.57": http.StatusNotFound, "compute 2.56": http.StatusBadRequest} {
		body := `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`
		resp := novaRaw(t, nu.Host, fmt.Sprintf("POST %s/servers/%s/action HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\n"+
			"OpenStack-API-Version: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			strings.TrimSuffix(nu.Path, "/"), idUnknown, nu.Host, token, v, len(body), body))
		if resp.StatusCode != want {
			t.Errorf("rebuild with user_data under %q: nova-api answers %s, want %d", v, resp.Status, want)
		}
	}
	type hdrs struct{ std, legacy []string }
	cases := []hdrs{
		{std: []string{"compute 2.57"}},
		{std: []string{"compute\xa02.57"}},
		{std: []string{"compute\x852.57"}},
		{std: []string{"compute 2.57\xa0"}},
		{std: []string{"\xa0compute 2.57"}},
		{std: []string{"compute\t2.57"}},
		{std: []string{"compute 2.57, foo\xa0bar"}},
		{std: []string{"compute 2.60, compute 2.57 x"}},
		{std: []string{"compute 2.57", "volume 3.5"}},
		{std: []string{"volume 3.5", "compute 2.58"}},
		{std: []string{"compute LATEST"}},
		{std: []string{"COMPUTE 2.58"}},
		{std: []string{"compute 2.-0"}},
		{std: []string{"compute 2.057"}},
		{std: []string{"compute 2.x"}},
		{std: []string{"volume 3.5"}, legacy: []string{"2.58"}},
		{legacy: []string{"2.58\xa0"}},
		{legacy: []string{"2.58,"}},
		{legacy: []string{"2.40, 2.58"}},
		{legacy: []string{"2.40", "2.58"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q %q", tc.std, tc.legacy), func(t *testing.T) {
			h := http.Header{}
			var b strings.Builder
			fmt.Fprintf(&b, "GET %s/flavors HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\n", strings.TrimSuffix(nu.Path, "/"), nu.Host, token)
			for _, v := range tc.std {
				h.Add("OpenStack-API-Version", v)
				fmt.Fprintf(&b, "OpenStack-API-Version: %s\r\n", v)
			}
			for _, v := range tc.legacy {
				h.Add("X-OpenStack-Nova-API-Version", v)
				fmt.Fprintf(&b, "X-OpenStack-Nova-API-Version: %s\r\n", v)
			}
			b.WriteString("Connection: close\r\n\r\n")
			resp := novaRaw(t, nu.Host, b.String())
			mv, ok := requestMicroversion(h, false)
			switch {
			case resp.StatusCode == http.StatusBadRequest:
				if ok {
					t.Errorf("nova-api refuses it (400); the gate reads %v", mv)
				}
			case resp.StatusCode != http.StatusOK:
				t.Fatalf("nova-api: %s", resp.Status)
			case !ok:
				t.Errorf("nova-api reads %q; the gate refuses it", resp.Header.Get("OpenStack-API-Version"))
			case mv.minor < 1<<30 && resp.Header.Get("OpenStack-API-Version") != fmt.Sprintf("compute %d.%d", mv.major, mv.minor):
				t.Errorf("nova-api reads %q; the gate %v", resp.Header.Get("OpenStack-API-Version"), mv)
			}
		})
	}
}
