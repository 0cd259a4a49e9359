package proxy

import (
	"net/http"
	"sync"
	"time"
)

// newTransport is the default Transport to Nova, tuned for a reverse proxy
// that many clients share: plenty of idle keep-alive connections to the one
// upstream, larger socket buffers than the 4 KiB default (fewer read and
// write calls for list responses), no transparent gzip (encodings pass
// through untouched), and HTTP/1.1 only (nova-api speaks nothing else; an
// HTTP/2 attempt to an https upstream would only add a negotiation).
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 5 * time.Minute
	t.DisableCompression = true
	t.ForceAttemptHTTP2 = false
	t.WriteBufferSize = 32 << 10
	t.ReadBufferSize = 32 << 10
	return t
}

// copyBuffers are the 32 KiB buffers httputil.ReverseProxy copies response
// bodies with; without a pool it allocates one per request.
var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool over a sync.Pool of *[]byte (Put
// costs a slice header instead of Get costing 32 KiB).
type bufferPool struct{ p sync.Pool }

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

// Put implements httputil.BufferPool; buffers of another size are dropped.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != 32<<10 {
		return
	}
	buf = buf[:cap(buf)]
	b.p.Put(&buf)
}
