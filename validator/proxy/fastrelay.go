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
	// head is the answer's header lines, each with its CRLF, copied out of
	// the upstream connection's buffer (which a read of the body may
	// overwrite), with the names made canonical in place; fields say where
	// in it each name and value is. Both are reused from answer to answer,
	// so that a parse allocates nothing.
	head []byte
}

// plainField is a header field of a plainAnswer: where its name and its
// value are in the answer's head (offsets, not slices: a field holds no
// pointer, so filling and sorting them costs no write barrier).
type plainField struct{ name0, name1, value0, value1 int32 }

// name and value are f's name and value: slices of a's head. (The head
// is a copy of part of an upstream read buffer, so its offsets fit int32.)
func (a *plainAnswer) name(f plainField) []byte  { return a.head[f.name0:f.name1] }
func (a *plainAnswer) value(f plainField) []byte { return a.head[f.value0:f.value1] }

// parsePlainAnswer parses the answer head at the start of buf into a (its
// head and fields reused) and reports whether it is a plain one. One pass
// over the lines: each ends at its first CR, which an LF must follow, and
// holds no control byte (plainText; so no LF alone), which is what
// plainLines asks of a whole head.
func parsePlainAnswer(buf []byte, a *plainAnswer) bool {
	// "HTTP/1.1 200 OK": three digits, a space, any reason
	eol := bytes.IndexByte(buf, '\r')
	if eol < len("HTTP/1.1 200 ") || eol+1 >= len(buf) || buf[eol+1] != '\n' ||
		!bytes.HasPrefix(buf, []byte("HTTP/1.1 ")) || buf[12] != ' ' || !plainText(buf[:eol]) {
		return false
	}
	status := 0
	for _, c := range buf[9:12] {
		if c < '0' || c > '9' {
			return false
		}
		status = status*10 + int(c-'0')
	}
	if status < 200 || status > 599 || !bodyAllowed(status) || status == http.StatusMultipleChoices {
		return false // (a 300's hrefs are rewritten: relay's)
	}
	*a = plainAnswer{status: status, contentLength: -1, fields: a.fields[:0], head: a.head[:0]}
	hasType := false
	for pos := eol + 2; ; {
		rest := buf[pos:]
		eol = bytes.IndexByte(rest, '\r')
		if eol < 0 || eol+1 >= len(rest) || rest[eol+1] != '\n' {
			return false // not all in yet, or a CR alone
		}
		pos += eol + 2
		if eol == 0 {
			a.n = pos
			break
		}
		line := rest[:eol]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !plainText(line) {
			return false
		}
		start := len(a.head)
		a.head = append(append(a.head, line...), "\r\n"...)
		name := a.head[start : start+colon]
		if !canonicalToken(name) {
			return false // (also obs-fold: the line starts with a space)
		}
		v0, v1 := start+colon+1, start+len(line)
		for v0 < v1 && (a.head[v0] == ' ' || a.head[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (a.head[v1-1] == ' ' || a.head[v1-1] == '\t') {
			v1--
		}
		value := a.head[v0:v1]
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
			hasType = true
		case "Date":
			a.hasDate = true
		case "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Upgrade", "Location", "Pragma":
			return false
		}
		a.fields = append(a.fields, plainField{int32(start), int32(start + colon), int32(v0), int32(v1)})
	}
	if a.contentLength < 0 || !hasType {
		return false // (a missing type is sniffed: relay's)
	}
	// sorted as http.Header.WriteSubset sorts, values of a name in order
	for i := 1; i < len(a.fields); i++ {
		for j := i; j > 0 && a.nameLess(a.fields[j], a.fields[j-1]); j-- {
			a.fields[j], a.fields[j-1] = a.fields[j-1], a.fields[j]
		}
	}
	return true
}

// nameLess reports whether f's name sorts before g's (the first bytes
// decide most).
func (a *plainAnswer) nameLess(f, g plainField) bool {
	if x, y := a.head[f.name0], a.head[g.name0]; x != y {
		return x < y
	}
	return bytes.Compare(a.name(f), a.name(g)) < 0
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

// canonicalToken reports whether name is an RFC 9110 token (a field
// name) and makes it canonical in place, as textproto.CanonicalMIMEHeaderKey
// makes it: an upper-case letter first and after each hyphen, lower case
// elsewhere.
func canonicalToken(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	upper := true
	for i, c := range name {
		if headBytes[c]&hbToken == 0 {
			return false
		}
		if upper && 'a' <= c && c <= 'z' {
			name[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			name[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return true
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
		b = append(append(append(append(b, w.plain.name(f)...), ": "...), w.plain.value(f)...), "\r\n"...)
	}
	if !w.plain.hasDate {
		b = append(append(append(b, "Date: "...), w.date.get()...), "\r\n"...)
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}
