package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// TestGateBodyLimit: a judged body of more than Options.MaxBody bytes gets
// 413 whether its length is announced (Content-Length) or not (chunked),
// by one byte or by many, on the fast server and on net/http; a body of
// exactly MaxBody bytes is judged.
func TestGateBodyLimit(t *testing.T) {
	const maxBody = 4096
	// sized is a valid server-create body of exactly n bytes for ref.
	sized := func(t *testing.T, n int, ref string) string {
		t.Helper()
		b := serverBody(ref)
		b = strings.Replace(b, `"name":"vm"`, `"name":"vm`+strings.Repeat("x", n-len(b))+`"`, 1)
		if len(b) != n {
			t.Fatalf("body of %d bytes, want %d", len(b), n)
		}
		return b
	}
	for _, server := range []string{"fast", "net/http"} {
		t.Run(server, func(t *testing.T) {
			if server == "net/http" {
				t.Setenv(envTestNetHTTP, "1")
			}
			f := catalogue(t)
			nova := newRecordingNova(t)
			g := newGate(t, f, nova.srv.URL, func(o *Options) { o.MaxBody = maxBody })
			for _, c := range []struct {
				name    string
				body    string
				chunked bool
				want    int
			}{
				{"ok chunked body of exactly MaxBody bytes", sized(t, maxBody, idGood), true, 202},
				{"ok body of exactly MaxBody bytes with a length", sized(t, maxBody, idGood), false, 202},
				{"fail chunked body one byte over MaxBody", sized(t, maxBody+1, idGood), true, 413},
				{"fail chunked body far over MaxBody", sized(t, 3*maxBody, idGood), true, 413},
				{"fail chunked body one byte over MaxBody, revoked image", sized(t, maxBody+1, idRevoked), true, 413},
				{"fail body one byte over MaxBody with a length", sized(t, maxBody+1, idGood), false, 413},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := nova.count()
					var req *http.Request
					if c.chunked {
						req, _ = http.NewRequest(http.MethodPost, g.srv.URL+"/v2.1/servers", chunkedReader{strings.NewReader(c.body)})
						req.TransferEncoding = []string{"chunked"}
					} else {
						req, _ = http.NewRequest(http.MethodPost, g.srv.URL+"/v2.1/servers", strings.NewReader(c.body))
					}
					req.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != c.want {
						t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
					}
					if forwarded := nova.count() - before; forwarded != map[bool]int{true: 1, false: 0}[c.want == 202] {
						t.Fatalf("%d requests forwarded", forwarded)
					}
				})
			}
		})
	}
}
