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

// textPart makes a part for a body, choosing the transfer encoding that
// survives Python's email parser byte for byte: 7bit only for printable ASCII
// with LF line ends; anything else (non-ASCII, CR, control bytes) base64.
// cloud-init mangles non-ASCII bytes of 8bit parts, so 8bit is never used.
func textPart(contentType string, body []byte, extra ...string) part {
	h := []string{"Content-Type: " + contentType}
	if plainASCII(body) {
		h = append(h, "Content-Transfer-Encoding: 7bit")
	} else {
		h = append(h, "Content-Transfer-Encoding: base64")
		body = base64Lines(body)
	}
	return part{header: append(h, extra...), body: body}
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
