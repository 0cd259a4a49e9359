package proxy

import (
	"bytes"
	"net"
	"net/http"
)

// The fast server's relay of plain answers. When the fast server (not
// net/http's) serves the request and the upstream's answer head is already
// in whole in the connection's buffer and as plain as Nova's answers to
// GETs are (HTTP/1.1, a final status with a body, one valid Content-Length,
// a Content-Type that is not an event stream, no hop-by-hop field, no
// Location to rewrite, no Pragma, ASCII only, no obs-fold), the forwarder
// skips http.ReadResponse and the header maps: the head is parsed into a
// list of fields that fastResponse writes out as net/http would write
// what relay would have put in the header (names canonical and sorted,
// Date added when missing, Connection: close when closing), and the body
// is copied from the connection's buffer. Any other answer goes through
// http.ReadResponse and relay as before (the bytes were only peeked).
// TestFastServerMatchesNetHTTP compares the two paths byte for byte, and
// FuzzPlainAnswer checks that a head the parser accepts is one
// http.ReadResponse reads the same.

// plainAnswer is an upstream answer head the fast relay takes.
type plainAnswer struct {
	status        int
	contentLength int64
	hasDate       bool
	n             int          // length of the head
	fields        []plainField // canonical names, sorted by name (stable)
	// head is the answer's header lines, copied out of the upstream
	// connection's buffer (which a read of the body may overwrite), with
	// the names made canonical in place; fields are slices of it. Both are
	// reused from answer to answer, so that a parse allocates nothing.
	head []byte
}

// plainField is a header field of a plainAnswer: slices of its head.
type plainField struct{ name, value []byte }

// parsePlainAnswer parses the answer head at the start of buf into a (its
// fields slice reused) and reports whether it is a plain one.
func parsePlainAnswer(buf []byte, a *plainAnswer) bool {
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return false
	}
	head := buf[:end+2] // each line with its CRLF
	if !plainLines(head) {
		return false
	}
	// "HTTP/1.1 200 OK": three digits, a space, any reason
	if len(head) < 15 || !bytes.HasPrefix(head, []byte("HTTP/1.1 ")) || head[12] != ' ' {
		return false
	}
	status := 0
	for _, c := range head[9:12] {
		if c < '0' || c > '9' {
			return false
		}
		status = status*10 + int(c-'0')
	}
	if status < 200 || status > 599 || !bodyAllowed(status) {
		return false
	}
	*a = plainAnswer{status: status, contentLength: -1, n: end + 4, fields: a.fields[:0],
		head: append(a.head[:0], head[bytes.IndexByte(head, '\n')+1:]...)}
	for b := a.head; len(b) > 0; {
		// (plainLines: every CR is followed by an LF, and every LF
		// follows a CR)
		eol := bytes.IndexByte(b, '\r')
		line := b[:eol]
		b = b[eol+2:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		token, canonical := tokenName(string(name)) // (tokenName is inlined: no allocation for a name up to 32 bytes)
		if !token {
			return false
		}
		if !canonical {
			canonicalToken(name)
		}
		switch string(name) {
		case "Content-Length":
			if a.contentLength >= 0 || !plainLength(value) {
				return false
			}
			a.contentLength = 0
			for _, c := range value {
				a.contentLength = a.contentLength*10 + int64(c-'0')
			}
		case "Content-Type":
			if containsFold(value, "event-stream") {
				return false // streamed, flushed as it comes: relay's
			}
		case "Date":
			a.hasDate = true
		case "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Upgrade", "Location", "Pragma":
			return false
		}
		a.fields = append(a.fields, plainField{name, value})
	}
	if a.contentLength < 0 || !a.has("Content-Type") {
		return false // (a missing type is sniffed: relay's)
	}
	// sorted as http.Header.WriteSubset sorts, values of a name in order
	for i := 1; i < len(a.fields); i++ {
		for j := i; j > 0 && bytes.Compare(a.fields[j].name, a.fields[j-1].name) < 0; j-- {
			a.fields[j], a.fields[j-1] = a.fields[j-1], a.fields[j]
		}
	}
	return true
}

func (a *plainAnswer) has(name string) bool {
	for _, f := range a.fields {
		if string(f.name) == name {
			return true
		}
	}
	return false
}

// plainLength reports a Content-Length value of plain digits, no leading
// zero, at most 15 digits.
func plainLength(v []byte) bool {
	if len(v) == 0 || len(v) > 15 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// canonicalToken makes a token field name canonical in place, as
// textproto.CanonicalMIMEHeaderKey makes it: an upper-case letter first
// and after each hyphen, lower case elsewhere.
func canonicalToken(name []byte) {
	upper := true
	for i, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			name[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			name[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// containsFold reports whether v holds sub (lower-case ASCII) in any case.
func containsFold(v []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(v); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := v[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// relayPlain copies a plain answer, whose head w.plain holds, to w: the
// body is read from uc's buffer, then from uc. It reports, as relay does,
// whether uc may carry another request and whether the client's answer
// must be aborted.
func (p *Proxy) relayPlain(uc *upConn, w *fastResponse, r *http.Request) (reusable, abort bool) {
	a := &w.plain
	_, _ = uc.br.Discard(a.n)
	w.called, w.status, w.contentLength, w.plainHead = true, a.status, a.contentLength, true
	if w.isHEAD {
		return true, false
	}
	if int64(uc.br.Buffered()) < a.contentLength {
		// the body is read without the head's deadline, as relay reads it
		uc.rd.clear(uc.c)
	}
	if w.conn != nil && w.bw.Buffered() == 0 && a.contentLength > int64(w.bw.Available()) &&
		a.contentLength <= int64(uc.br.Size()) {
		// A body larger than the write buffer that fits in uc's read
		// buffer: once it is all there, head and body leave in one
		// writev rather than a buffer's worth and then the rest. (When
		// the upstream fails mid-body, the loop below relays what came,
		// as net/http's server would.)
		if body, err := uc.br.Peek(int(a.contentLength)); err == nil {
			w.wroteHdr, w.written = true, a.contentLength
			w.head = w.appendPlainHead(w.head[:0])
			switch c := w.conn.(type) {
			case twoWriter:
				_, err = c.writeTwo(w.head, body)
			case *net.TCPConn:
				w.vec = append(w.vecArr[:0], w.head, body) // (one writev; WriteTo consumes vec)
				_, err = w.vec.WriteTo(c)
			default:
				// one write (over TLS, one record rather than two): a
				// copy of at most uc's buffer costs less than a write
				w.head = append(w.head, body...)
				_, err = w.conn.Write(w.head)
			}
			w.noteErr(err)
			_, _ = uc.br.Discard(len(body))
			return err == nil, false
		}
	}
	for left := a.contentLength; left > 0; {
		if uc.br.Buffered() == 0 {
			if _, err := uc.br.Peek(1); err != nil {
				// the upstream failed mid-body
				return false, r.Context().Err() == nil
			}
		}
		b, _ := uc.br.Peek(int(min(int64(uc.br.Buffered()), left)))
		if _, err := w.Write(b); err != nil {
			return false, false // the client is gone
		}
		_, _ = uc.br.Discard(len(b))
		left -= int64(len(b))
	}
	return true, false
}

// twoWriter writes two buffers in one system call when it can
// (directConn).
type twoWriter interface {
	writeTwo(a, b []byte) (int64, error)
}

// writePlainHead writes the head of a plain answer (see writeHead).
func (w *fastResponse) writePlainHead() {
	w.head = w.appendPlainHead(w.head[:0])
	w.bw.Write(w.head)
}

// appendPlainHead appends the head of a plain answer to b: the status
// line, the upstream's fields, Date when the upstream sent none, and
// Connection: close when the connection ends after this answer.
func (w *fastResponse) appendPlainHead(b []byte) []byte {
	if w.wantsClose || w.closing() {
		w.closeAfter = true
	}
	b = appendStatusLine(b, w.status)
	for _, f := range w.plain.fields {
		b = append(append(append(append(b, f.name...), ": "...), f.value...), "\r\n"...)
	}
	if !w.plain.hasDate {
		b = append(append(append(b, "Date: "...), w.date.get()...), "\r\n"...)
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}
