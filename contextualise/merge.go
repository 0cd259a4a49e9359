package contextualise

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDecompressed bounds the user's data after gunzip (a gzip bomb guard),
// and with it what one request costs the gate: the merge holds the data in
// two transfer encodings (quoted-printable up to 3 times its size) and
// gzips each document, some 20 times the data in all. 1 MiB is the gate's
// default bound on a request body, and over 20 times what Nova's limit
// holds gzip-compressed (49149 bytes): text compresses 3 to 10 times.
// Deflate's own bound (about 1000:1) would let 65535 characters of base64
// expand to 50 MB, and data that large can still gzip back under the limit
// (8 MiB of zeros does), so the guard cannot be "what would not fit".
const maxDecompressed = 1 << 20

// Vars are the values a site fragment's templates can use: {{ image_uuid }},
// {{ tag }}, {{ vo }}, {{ site_name }}, {{ project_id }}, {{ user_id }},
// {{ server_name }} and {{ var.NAME }} for Extra["NAME"].
type Vars struct {
	ImageUUID, Tag, VO, SiteName, ProjectID, UserID, ServerName string
	// Extra are site-defined variables (the [contextualise.vars] table).
	Extra map[string]string
}

// Merge returns the base64 user data to send to Nova for a boot or a rebuild:
// the user's user_data (userDataB64, as in the request; hasUserData false when
// the request has none) merged with the site's fragments for v.VO and v.Tag,
// templated with v.
//
// When the site has nothing for this VO and tag, the user's data comes back
// unchanged ("" when hasUserData is false: send no user_data). Errors are
// *TooLargeError and *UserDataError for the request's fault (answer 400), or
// an ordinary error for the site's (a var.NAME the configuration lacks).
func (s *Site) Merge(userDataB64 string, hasUserData bool, v Vars) (string, error) {
	unchanged := ""
	if hasUserData {
		unchanged = userDataB64
	}
	configs, scripts := s.fragments(v.VO, v.Tag)
	if len(configs) == 0 && len(scripts) == 0 {
		return unchanged, nil
	}

	var user []byte
	if hasUserData {
		var err error
		if user, err = decodeUserData(userDataB64); err != nil {
			return "", err
		}
	}

	prefix, err := namePrefix(user)
	if err != nil {
		return "", err
	}
	var site []part
	for i, sc := range scripts {
		body, err := renderScript(sc, v)
		if err != nil {
			return "", err
		}
		name := fmt.Sprintf("%s-%02d-%s", prefix, i+1, sc.base)
		site = append(site, textPart(`text/x-shellscript; charset="utf-8"`, body,
			`Content-Disposition: attachment; filename="`+name+`"`))
	}
	cc, err := siteCloudConfig(configs, v)
	if err != nil {
		return "", err
	}
	if cc != nil {
		site = append(site, textPart(`text/cloud-config; charset="utf-8"`, cc,
			`Content-Disposition: attachment; filename="`+prefix+`-site.cfg"`,
			"Merge-Type: "+siteMergeType))
	}
	if len(site) == 0 {
		return unchanged, nil // only empty fragments
	}

	// One document for each encoding of the user's part, the shortest
	// first (only one when the user's data is plain ASCII, MIME or absent).
	alternatives := [][]part{site}
	if len(user) > 0 {
		ups, err := userParts(user)
		if err != nil {
			return "", err
		}
		alternatives = nil
		for _, up := range ups {
			alternatives = append(alternatives, append([]part{up}, site...))
		}
	}
	out, err := encodeWithinLimit(len(alternatives), func(i int) ([]byte, error) {
		doc, _, err := buildMIME(alternatives[i])
		return doc, err
	})
	var tooLarge *TooLargeError
	if errors.As(err, &tooLarge) {
		// whose fault: what the site's context takes alone (measured only
		// on this path, so a boot that fits pays nothing for it)
		n, serr := encodedSize(site)
		if serr != nil {
			return "", serr
		}
		if n > MaxUserData {
			return "", fmt.Errorf("contextualise: the site's context for VO %q tag %q is %d base64 characters on its own even gzip-compressed, over Nova's limit of %d: shorten its fragments", v.VO, v.Tag, n, MaxUserData)
		}
		tooLarge.Site = n
	}
	return out, err
}

// encodedSize is the length in base64 characters of the parts' MIME
// document, gzip-compressed when that is shorter.
func encodedSize(parts []part) (int, error) {
	doc, _, err := buildMIME(parts)
	if err != nil {
		return 0, err
	}
	z, err := gzipBest(doc)
	if err != nil {
		return 0, err
	}
	return min(base64.StdEncoding.EncodedLen(len(doc)), base64.StdEncoding.EncodedLen(len(z))), nil
}

// decodeUserData decodes the request's base64 and, like cloud-init, gunzips
// data that starts with the gzip magic.
func decodeUserData(b64 string) ([]byte, error) {
	if len(b64) > MaxUserData {
		// Nova's schema refuses it; the gate does before decoding
		// in the sizes a user knows: the file's, before the client's base64
		return nil, &UserDataError{Reason: fmt.Sprintf("%d characters of base64 (a file of about %d bytes), over Nova's limit of %d characters (a file of at most %d bytes); shorten it",
			len(b64), base64.StdEncoding.DecodedLen(len(b64)), MaxUserData, maxUserDataBytes)}
	}
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, b64)
	raw, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, &UserDataError{Reason: "not valid base64", Err: err}
	}
	if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		return raw, nil
	}
	// Data that starts like gzip and does not decompress is refused: kept
	// as it is, it would reach cloud-init as an opaque text part, and the
	// user's own data would not run (Python's gzip reader also takes some
	// streams Go's does not, trailing zero padding for one).
	notGzip := func(err error) error {
		return &UserDataError{Reason: "starts like gzip but does not decompress; send it uncompressed", Err: err}
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, notGzip(err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxDecompressed+1))
	if err != nil {
		return nil, notGzip(err)
	}
	if len(out) > maxDecompressed {
		return nil, &UserDataError{Reason: "gzip-compressed user data expands to more than " + strconv.Itoa(maxDecompressed) + " bytes (1 MiB), the most the image gate takes; send less"}
	}
	return out, nil
}

// isMIME is cloud-init's own test (cloudinit/user_data.py convert_string:
// b"mime-version:" in bdata[0:4096].lower()): the first 4096 bytes, with
// ASCII letters folded and nothing else, as Python's bytes.lower does.
// Unicode folding (bytes.ToLower) would take "MİME-Version:" (U+0130
// lowercases to ASCII i) for the header, where cloud-init sees plain text.
func isMIME(b []byte) bool {
	head := b[:min(len(b), 4096)]
	low := make([]byte, len(head))
	for i, c := range head {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	return bytes.Contains(low, []byte("mime-version:"))
}

// userParts makes the first part from the user's data, byte for byte: a MIME
// document pasted whole with its own headers (cloud-init walks nested
// multiparts), anything else as text/plain so cloud-init detects its type
// from its first line, as it would have at the top level. Text that is not
// plain ASCII comes in each encoding that carries it (textEncodings),
// shortest first.
func userParts(user []byte) ([]part, error) {
	if isMIME(user) {
		if !utf8.Valid(user) {
			return nil, &UserDataError{Reason: "a MIME document must be UTF-8 text for cloud-init to parse it; base64-encode binary parts"}
		}
		return []part{{body: user, raw: true}}, nil
	}
	return textEncodings(`text/plain; charset="utf-8"`, user), nil
}

// namePrefix returns the prefix of this merge's site part filenames:
// "imagetrust-" and a random token the user's data does not hold, so that no
// user part can share (and overwrite, or be overwritten by) a site part's
// file, even after cloud-init cleans filenames of characters it does not
// allow: the user cannot guess the token. The check costs one scan of the
// user's data, whatever it holds.
func namePrefix(user []byte) (string, error) {
	for range 8 {
		tok, err := newNameToken()
		if err != nil {
			return "", err
		}
		p := "imagetrust-" + tok
		if !bytes.Contains(user, []byte(p)) {
			return p, nil
		}
	}
	return "", errors.New("contextualise: no part name prefix free of the user data after 8 tries")
}

// renderScript substitutes a script's template variables.
func renderScript(sc *script, v Vars) ([]byte, error) {
	var firstErr error
	out := sc.tmpl.render(func(_ int, name string) string {
		val, err := v.lookup(name)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return val
	})
	if firstErr != nil {
		var ude *UserDataError
		if errors.As(firstErr, &ude) {
			return nil, firstErr
		}
		return nil, fmt.Errorf("contextualise: %s: %w", sc.path, firstErr)
	}
	return out, nil
}

// encodeWithinLimit base64-encodes the first of n documents (the same
// content, the user's part in different encodings, the shortest first; doc
// builds one) when that fits; else the first whose gzip fits. Only when none
// does is every one gzipped, and the error gives the smallest size.
func encodeWithinLimit(n int, doc func(i int) ([]byte, error)) (string, error) {
	smallest := 0
	for i := range n {
		d, err := doc(i)
		if err != nil {
			return "", err
		}
		if i == 0 && base64.StdEncoding.EncodedLen(len(d)) <= MaxUserData {
			return base64.StdEncoding.EncodeToString(d), nil
		}
		z, err := gzipBest(d)
		if err != nil {
			return "", err
		}
		size := base64.StdEncoding.EncodedLen(len(z))
		if size <= MaxUserData {
			return base64.StdEncoding.EncodeToString(z), nil
		}
		if smallest == 0 || size < smallest {
			smallest = size
		}
	}
	return "", &TooLargeError{Size: smallest, Limit: MaxUserData}
}

// gzipBest compresses b at gzip's best compression.
func gzipBest(b []byte) ([]byte, error) {
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("contextualise: gzip: %w", err)
	}
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("contextualise: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("contextualise: gzip: %w", err)
	}
	return z.Bytes(), nil
}
