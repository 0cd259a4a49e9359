package contextualise

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// siteMergeType makes the site's cloud-config append to the user's lists and
// keep the user's scalars (cloudinit/mergers: the part's own header rule).
const siteMergeType = "list(append)+dict(no_replace,recurse_list)+str()"

// newBoundary returns a fresh MIME boundary; tests replace it to get
// deterministic output.
var newBoundary = func() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("boundary: %w", err)
	}
	return "==imagetrust-" + hex.EncodeToString(b) + "==", nil
}

// newNameToken returns the random token of a merge's site part filenames
// (namePrefix); tests replace it to get deterministic output.
var newNameToken = func() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("part name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// part is one MIME part: header lines and a body written as-is, or a user
// document pasted whole (raw) with its own headers.
type part struct {
	header []string
	body   []byte
	raw    bool
}

// textPart makes a part for a body in the shortest transfer encoding that
// survives Python's email parser byte for byte (textEncodings).
func textPart(contentType string, body []byte, extra ...string) part {
	return textEncodings(contentType, body, extra...)[0]
}

// textEncodings returns a body's part in each transfer encoding that
// Python's email parser (get_payload(decode=True), as cloud-init reads a
// part) returns byte for byte, the shortest first: 7bit alone for printable
// ASCII with LF line ends; else quoted-printable and base64. 8bit is never
// used: cloud-init mangles non-ASCII bytes of 8bit parts.
//
// Quoted-printable keeps text that is mostly ASCII (CRLF line ends, a few
// accented letters, a stray Latin-1 byte) about as long and as compressible
// as it was; base64 is shorter for binary data but hides the text's
// repetitions from gzip. Merge tries the other when the document must be
// gzipped and the first does not fit.
func textEncodings(contentType string, body []byte, extra ...string) []part {
	mk := func(cte string, b []byte) part {
		h := []string{"Content-Type: " + contentType, "Content-Transfer-Encoding: " + cte}
		return part{header: append(h, extra...), body: b}
	}
	if plainASCII(body) {
		return []part{mk("7bit", body)}
	}
	qp, b64 := mk("quoted-printable", quotedPrintable(body)), mk("base64", base64Lines(body))
	if b64.size() < qp.size() {
		return []part{b64, qp}
	}
	return []part{qp, b64}
}

// quotedPrintable is RFC 2045 quoted-printable in lines of at most 76
// characters, written for Python's binascii.a2b_qp to give back the exact
// bytes: LF is a line break (a2b_qp keeps it as LF), CR and every byte
// outside printable ASCII is =XX, '=' is =3D, and a space or tab before a
// line break or at the end is =20 or =09 (transports may strip trailing
// white space). A soft line break "=" never ends the body.
func quotedPrintable(b []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/8)
	line := 0
	for i, c := range b {
		if c == '\n' {
			out.WriteByte('\n')
			line = 0
			continue
		}
		literal := c >= '!' && c <= '~' && c != '=' ||
			(c == ' ' || c == '\t') && i+1 < len(b) && b[i+1] != '\n'
		n := 3
		if literal {
			n = 1
		}
		if line+n > 75 { // leave room for the soft break's '='
			out.WriteString("=\n")
			line = 0
		}
		if literal {
			out.WriteByte(c)
		} else {
			out.Write([]byte{'=', hexDigits[c>>4], hexDigits[c&15]})
		}
		line += n
	}
	return out.Bytes()
}

// size is the part's length in the document, give or take the delimiter.
func (p part) size() int {
	n := len(p.body) + 1
	for _, h := range p.header {
		n += len(h) + 1
	}
	return n
}

func plainASCII(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

// base64Lines is RFC 2045 base64 in 76-character lines.
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteByte('\n')
		enc = enc[76:]
	}
	out.WriteString(enc)
	return out.Bytes()
}

// buildMIME writes the multipart/mixed document. The boundary is drawn until
// it occurs in no part; each body is followed by the line break that belongs
// to the next delimiter, so parsers return the body unchanged.
func buildMIME(parts []part) ([]byte, string, error) {
	var boundary string
	for try := 0; ; try++ {
		if try == 8 {
			return nil, "", fmt.Errorf("contextualise: no MIME boundary free of the payloads after %d tries", try)
		}
		b, err := newBoundary()
		if err != nil {
			return nil, "", fmt.Errorf("contextualise: %w", err)
		}
		if !anyContains(parts, b) {
			boundary = b
			break
		}
	}
	var out bytes.Buffer
	out.WriteString("MIME-Version: 1.0\n")
	out.WriteString("Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\n\n")
	for _, p := range parts {
		out.WriteString("--" + boundary + "\n")
		if !p.raw {
			for _, h := range p.header {
				out.WriteString(h + "\n")
			}
			out.WriteString("\n")
		}
		out.Write(p.body)
		out.WriteString("\n")
	}
	out.WriteString("--" + boundary + "--\n")
	return out.Bytes(), boundary, nil
}

func anyContains(parts []part, s string) bool {
	for _, p := range parts {
		if bytes.Contains(p.body, []byte(s)) {
			return true
		}
		for _, h := range p.header {
			if bytes.Contains([]byte(h), []byte(s)) {
				return true
			}
		}
	}
	return false
}
