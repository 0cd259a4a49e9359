package contextualise

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// FuzzMerge feeds arbitrary user data through Merge: no panic, the output
// always within Nova's limit or a typed error, and the user's payload
// recoverable byte for byte from the first part.
func FuzzMerge(f *testing.F) {
	f.Add([]byte(userCloudConfig))
	f.Add([]byte(userScript))
	f.Add([]byte(userMIME))
	f.Add(userBinary)
	f.Add(gz(f, []byte(userMIME)))
	f.Add([]byte("MIME-Version: 1.0\n\n--x"))
	f.Add([]byte("abc\r"))
	f.Add([]byte("#!/bin/sh\r\necho caf\xc3\xa9 \t\n= \xff"))
	f.Add([]byte{})
	s := loadTestSite(f)
	v := testVars()
	f.Fuzz(func(t *testing.T, user []byte) {
		out, err := s.Merge(base64.StdEncoding.EncodeToString(user), true, v)
		if err != nil {
			var tl *TooLargeError
			var ud *UserDataError
			if !errors.As(err, &tl) && !errors.As(err, &ud) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if len(out) > MaxUserData {
			t.Fatalf("output %d base64 characters, over %d", len(out), MaxUserData)
		}
		want, err := decodeUserData(base64.StdEncoding.EncodeToString(user))
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := decodeOutput(t, out)
		got, nparts := firstPart(t, doc, isMIME(want))
		if len(want) == 0 {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("first part = %q, want the user's data %q", got, want)
		}
		if nparts != 4 { // user, two scripts, site cloud-config
			t.Fatalf("%d parts, want 4", nparts)
		}
	})
}

// firstPart splits the document at its boundary and returns the first
// part's payload: the raw part when the user's data was MIME (embedded
// whole), else the body decoded per its Content-Transfer-Encoding (Go's
// quoted-printable reader; cloud-init's own is checked in cloudinit_test.go). It also
// checks that Go's MIME reader agrees on the number of parts.
func firstPart(t *testing.T, doc []byte, raw bool) ([]byte, int) {
	t.Helper()
	head, _, ok := bytes.Cut(doc, []byte("\n\n"))
	if !ok || !bytes.HasPrefix(head, []byte("MIME-Version: 1.0\n")) {
		t.Fatalf("document does not start with MIME-Version: %q", doc[:min(len(doc), 80)])
	}
	ct := strings.TrimPrefix(string(bytes.SplitN(head, []byte("\n"), 2)[1]), "Content-Type: ")
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("top-level Content-Type %q: %v", ct, err)
	}
	boundary := params["boundary"]

	// Go's reader parses each part's headers; an embedded user document's
	// headers are the user's (cloud-init's parser is lenient), so for those
	// count the delimiters instead.
	n := bytes.Count(doc, []byte("\n--"+boundary+"\n"))
	mr := multipart.NewReader(bytes.NewReader(doc[len(head)+2:]), boundary)
	for read := 0; !raw; read++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			if read != n {
				t.Fatalf("Go's MIME reader read %d parts, the document has %d delimiters", read, n)
			}
			break
		}
		if err != nil {
			t.Fatalf("Go's MIME reader: %v", err)
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			t.Fatalf("Go's MIME reader: %v", err)
		}
	}

	start := bytes.Index(doc, []byte("--"+boundary+"\n"))
	rest := doc[start+len(boundary)+3:]
	end := bytes.Index(rest, []byte("\n--"+boundary))
	if start < 0 || end < 0 {
		t.Fatalf("no first part delimited by %q", boundary)
	}
	p := rest[:end]
	if raw {
		return p, n
	}
	hdr, body, _ := bytes.Cut(p, []byte("\n\n"))
	if bytes.Contains(hdr, []byte("Content-Transfer-Encoding: base64")) {
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\n", ""))
		if err != nil {
			t.Fatalf("first part base64: %v", err)
		}
		return b, n
	}
	if bytes.Contains(hdr, []byte("Content-Transfer-Encoding: quoted-printable")) {
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			t.Fatalf("first part quoted-printable: %v", err)
		}
		return b, n
	}
	return body, n
}
