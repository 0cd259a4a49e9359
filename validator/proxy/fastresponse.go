package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// fastResponse is the fast server's http.ResponseWriter. It writes what
// net/http's own response writer would write for the same calls (the
// differential test TestFastServerMatchesNetHTTP compares the bytes):
// status line, the handler's header fields sorted, then Date,
// Content-Length, Content-Type (sniffed when missing), Connection and
// Transfer-Encoding as net/http adds them; a body of unknown length is
// chunked, the first 2048 bytes are held back so that a short body gets a
// Content-Length; 1xx answers go out at once; trailers follow the last
// chunk. Unlike net/http's it does not snapshot the header at WriteHeader:
// its one user (the forwarder, and the gate's error answers) does not
// change the header after WriteHeader except for trailers.
type fastResponse struct {
	bw       *bufio.Writer // the connection's
	header   http.Header   // reused by the connection's requests
	isHEAD   bool
	closing  func() bool // whether the server is shutting down
	date     *fastDate
	status   int
	called   bool // WriteHeader was called (with a final status)
	wroteHdr bool // the head is in bw
	done     bool // the handler returned
	chunking bool
	// wantsClose: the request said Connection: close; closeAfter: the
	// connection ends after this answer
	wantsClose, closeAfter bool
	contentLength          int64 // -1 when unknown
	written                int64
	held                   []byte // body bytes held back before the head
	trailers               []string
	werr                   error
	// plain is the upstream's answer head when the fast relay takes it
	// (fastrelay.go), plainHead set when this answer is written from it
	plain     plainAnswer
	plainHead bool
	// conn is the client connection bw writes to, for the relay's writev
	// of head and body (nil: always through bw); head and vec are its
	// reused buffers
	conn net.Conn
	head []byte
	// start is when the request arrived (the forwarder's clock for it)
	start time.Time
	// watch is the connection's client watch, which interrupts the
	// forwarder's exchange when the client goes away (nil: forward
	// registers a context.AfterFunc)
	watch  *clientWatch
	vec    net.Buffers
	vecArr [2][]byte
}

// heldBack is how much body net/http buffers before it writes the head
// (bufferBeforeChunkingSize).
const heldBack = 2048

// reset prepares w for the next request.
func (w *fastResponse) reset(isHEAD, wantsClose bool) {
	clear(w.header)
	w.isHEAD, w.wantsClose = isHEAD, wantsClose
	w.status, w.called, w.wroteHdr, w.done, w.chunking, w.closeAfter = 0, false, false, false, false, false
	w.contentLength, w.written, w.held, w.trailers, w.werr = -1, 0, w.held[:0], w.trailers[:0], nil
	w.plainHead = false
}

// Header implements http.ResponseWriter.
func (w *fastResponse) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter.
func (w *fastResponse) WriteHeader(code int) {
	if w.called {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		writeStatusLine(w.bw, code)
		_ = w.header.WriteSubset(w.bw, excludedNoBody)
		w.bw.WriteString("\r\n")
		w.noteErr(w.bw.Flush())
		return
	}
	w.called, w.status = true, code
	if cl := headerGet(w.header, "Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			delete(w.header, "Content-Length")
		}
	}
}

// Write implements http.ResponseWriter.
func (w *fastResponse) Write(p []byte) (int, error) {
	if !w.called {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n0 := len(p)
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if !w.wroteHdr {
		if len(w.held)+len(p) <= heldBack {
			w.held = append(w.held, p...)
			return n0, nil
		}
		if len(w.held) == 0 {
			w.writeHead(p)
		} else {
			// as bufio.Writer does: fill the held bytes, write them out
			n := heldBack - len(w.held)
			w.held = append(w.held, p[:n]...)
			w.writeHead(w.held)
			w.writeChunk(w.held)
			w.held = w.held[:0]
			p = p[n:]
		}
	}
	w.writeChunk(p)
	if w.werr != nil {
		return 0, w.werr
	}
	return n0, nil
}

// FlushError sends what is buffered to the client (http.ResponseController).
func (w *fastResponse) FlushError() error {
	if !w.called {
		w.WriteHeader(http.StatusOK)
	}
	w.flushHeld()
	w.noteErr(w.bw.Flush())
	return w.werr
}

// Flush implements http.Flusher.
func (w *fastResponse) Flush() { _ = w.FlushError() }

// flushHeld writes the head, if it is not out yet, and the held body bytes.
func (w *fastResponse) flushHeld() {
	if w.wroteHdr {
		return
	}
	w.writeHead(w.held)
	if len(w.held) > 0 {
		w.writeChunk(w.held)
		w.held = w.held[:0]
	}
}

// finish ends the answer once the handler has returned, and reports
// whether the connection may carry another request.
func (w *fastResponse) finish() bool {
	w.done = true
	if !w.called {
		w.WriteHeader(http.StatusOK)
	}
	w.flushHeld()
	if w.chunking {
		w.bw.WriteString("0\r\n")
		if t := w.finalTrailers(); t != nil {
			_ = t.Write(w.bw)
		}
		w.bw.WriteString("\r\n")
	}
	w.noteErr(w.bw.Flush())
	if w.closeAfter || w.werr != nil {
		return false
	}
	return w.isHEAD || w.contentLength == -1 || !bodyAllowed(w.status) || w.contentLength == w.written
}

func (w *fastResponse) noteErr(err error) {
	if err != nil && w.werr == nil {
		w.werr = err
	}
}

// writeChunk writes body bytes after the head, chunked when chunking.
func (w *fastResponse) writeChunk(p []byte) {
	if w.isHEAD || w.werr != nil {
		return
	}
	if w.chunking {
		var b [16]byte
		w.bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	_, err := w.bw.Write(p)
	if w.chunking && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	w.noteErr(err)
}

// excludedNoBody are the fields a 1xx answer does not carry.
var excludedNoBody = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

// writeHead writes the status line and header fields, p being the first
// bytes of the body (for sniffing, and for the length of a body that is
// all there when the handler has returned); see net/http's
// chunkWriter.writeHeader, which this follows.
func (w *fastResponse) writeHead(p []byte) {
	w.wroteHdr = true
	if w.plainHead {
		w.writePlainHead()
		return
	}
	h := w.header
	var exclude map[string]bool
	del := func(k string) {
		if _, ok := h[k]; ok {
			if exclude == nil {
				exclude = map[string]bool{}
			}
			exclude[k] = true
		}
	}
	trailers := false
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = map[string]bool{}
			}
			exclude[k] = true
			trailers = true
		}
	}
	for _, v := range h["Trailer"] {
		trailers = true
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				f = http.CanonicalHeaderKey(f)
				if validTrailer(f) {
					w.trailers = append(w.trailers, f)
				}
			}
		}
	}
	te := headerGet(h, "Transfer-Encoding")
	hasTE := te != ""
	var setCL []byte
	var clBuf [20]byte
	code := w.status
	if w.done && !trailers && !hasTE && bodyAllowed(code) && !headerHas(h, "Content-Length") && (!w.isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		setCL = strconv.AppendInt(clBuf[:0], int64(len(p)), 10)
	}
	hasCL := w.contentLength != -1
	keepAlives := !w.closing()
	if w.wantsClose || headerGet(h, "Connection") == "close" || !keepAlives {
		w.closeAfter = true
	}
	var setCT, setConn, setTE string
	if bodyAllowed(code) {
		_, haveType := h["Content-Type"]
		if h.Get("Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			setCT = http.DetectContentType(p)
		}
	} else {
		del("Content-Length")
		del("Transfer-Encoding")
		if code == http.StatusNotModified {
			del("Content-Type")
		}
	}
	if hasCL && hasTE && te != "identity" {
		del("Content-Length")
		hasCL = false
	}
	switch {
	case w.isHEAD || !bodyAllowed(code):
		del("Transfer-Encoding")
	case hasCL:
		del("Transfer-Encoding")
	case hasTE && te == "identity":
		w.closeAfter = true
		del("Transfer-Encoding")
	default:
		w.chunking = true
		setTE = "chunked"
		if hasTE && te == "chunked" {
			del("Transfer-Encoding")
		}
	}
	if w.chunking {
		del("Content-Length")
	}
	if w.closeAfter && (!keepAlives || !hasToken(h["Connection"], "close")) {
		del("Connection")
		setConn = "close"
	}
	bw := w.bw
	writeStatusLine(bw, code)
	_ = h.WriteSubset(bw, exclude)
	if !headerHas(h, "Date") {
		bw.WriteString("Date: ")
		bw.Write(w.date.get())
		bw.WriteString("\r\n")
	}
	if setCL != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(setCL)
		bw.WriteString("\r\n")
	}
	for _, kv := range [...][2]string{{"Content-Type", setCT}, {"Connection", setConn}, {"Transfer-Encoding", setTE}} {
		if kv[1] != "" {
			bw.WriteString(kv[0])
			bw.WriteString(": ")
			bw.WriteString(kv[1])
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// finalTrailers are the trailers to send: the TrailerPrefix fields and the
// declared ones (net/http's response.finalTrailers).
func (w *fastResponse) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.header {
		if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = http.Header{}
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = http.Header{}
		}
		for _, v := range w.header[k] {
			t.Add(k, v)
		}
	}
	return t
}

// validTrailer is httpguts.ValidTrailerHeader for a canonical name.
func validTrailer(k string) bool {
	if strings.HasPrefix(k, "If-") {
		return false
	}
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Range",
		"Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te", "Trailer", "Transfer-Encoding",
		"Www-Authenticate":
		return false
	}
	return true
}

// headerGet is the first value of k, k canonical (net/http's Header.get).
func headerGet(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerHas reports whether h has k, k canonical (net/http's Header.has).
func headerHas(h http.Header, k string) bool {
	_, ok := h[k]
	return ok
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// writeStatusLine writes an HTTP/1.1 status line as net/http does.
func writeStatusLine(bw *bufio.Writer, code int) {
	var b [64]byte
	bw.Write(appendStatusLine(b[:0], code))
}

// appendStatusLine appends an HTTP/1.1 status line as net/http writes it.
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		return append(append(append(b, ' '), text...), "\r\n"...)
	}
	return fmt.Appendf(b, "%03d status code %d\r\n", code, code)
}

// fastDate is a connection's Date value, formatted once a second.
type fastDate struct {
	sec int64
	b   []byte
}

func (d *fastDate) get() []byte {
	now := time.Now()
	if s := now.Unix(); s != d.sec || d.b == nil {
		d.sec = s
		d.b = now.UTC().AppendFormat(d.b[:0], http.TimeFormat)
	}
	return d.b
}
