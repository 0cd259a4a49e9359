package crl

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"hash/maphash"
	"math/big"
	"math/bits"
	"slices"
	"time"
)

// List is a parsed CRL in compact form, made for CRLs of a million entries:
// the standard library's parse of everything but the entries (Header), and
// the entries left in the DER, indexed by a hash of their serial number.
// An entry is decoded only when a lookup finds it. Every entry is checked for
// well-formedness when the List is built, so a lookup can't meet bad bytes.
//
// A List is immutable and safe for concurrent lookups.
type List struct {
	// Header is the CRL without its entries (RevokedCertificateEntries is
	// empty); Raw and RawTBSRevocationList are those of the complete CRL, so
	// Header.CheckSignatureFrom checks the real signature.
	Header *x509.RevocationList

	der []byte
	// keys holds the entries grouped by the top bits of their serial's hash
	// (a counting sort, no comparisons): the entries of bucket b are
	// keys[start[b]:start[b+1]], in CRL order.
	keys  []entryKey
	start []uint32
	shift uint
	seed  maphash.Seed
	sum   [32]byte
}

type entryKey struct {
	h   uint64
	off uint32 // offset of the entry's SEQUENCE in der
}

// ParseList reads one CRL, DER or PEM (see Decode). Malformed input of any
// kind is an *Error with ReasonParse; a critical entry extension it does not
// know, or a certificateIssuer entry extension (indirect CRL), is an *Error
// with ReasonUnsupported.
func ParseList(b []byte) (*List, error) {
	return ParseListChecked(b, nil)
}

// ParseListChecked is ParseList that runs check on the CRL's header (all
// but the entries, with Raw and RawTBSRevocationList whole, so that the
// signature can be checked) before it indexes the entries: a CRL whose
// signature does not verify costs its bytes, not an index of every entry.
// check's error is returned as it is.
func ParseListChecked(b []byte, check func(h *x509.RevocationList) error) (*List, error) {
	der, err := Decode(b)
	if err != nil {
		return nil, err
	}
	bad := func(what string) error { return refuse(ReasonParse, "", "malformed CRL: %s", what) }
	outer, _, _, _ := expect(der, tagSequence)
	tbs, tbsWhole, rest, ok := expect(outer, tagSequence)
	if !ok {
		return nil, bad("tbsCertList")
	}
	_, algWhole, rest, ok := expect(rest, tagSequence)
	if !ok {
		return nil, bad("signatureAlgorithm")
	}
	_, sigWhole, rest, ok := expect(rest, tagBitString)
	if !ok || len(rest) != 0 {
		return nil, bad("signature")
	}
	// Walk the TBS fields; keep every one but revokedCertificates.
	var head [][]byte
	p := tbs
	var el []byte
	if peek(p, tagInteger) {
		if _, el, p, ok = expect(p, tagInteger); !ok {
			return nil, bad("version")
		}
		head = append(head, el)
	}
	for _, what := range []string{"signature", "issuer"} {
		if _, el, p, ok = expect(p, tagSequence); !ok {
			return nil, bad(what)
		}
		head = append(head, el)
	}
	if !peek(p, tagUTCTime) && !peek(p, tagGeneralizedTime) {
		return nil, bad("thisUpdate")
	}
	if _, _, el, p, ok = element(p); !ok {
		return nil, bad("thisUpdate")
	}
	head = append(head, el)
	if peek(p, tagUTCTime) || peek(p, tagGeneralizedTime) {
		if _, _, el, p, ok = element(p); !ok {
			return nil, bad("nextUpdate")
		}
		head = append(head, el)
	}
	var revoked []byte
	if peek(p, tagSequence) {
		if revoked, _, p, ok = expect(p, tagSequence); !ok {
			return nil, bad("revokedCertificates")
		}
	}
	if peek(p, tagExplicit0) {
		if _, el, p, ok = expect(p, tagExplicit0); !ok {
			return nil, bad("crlExtensions")
		}
		head = append(head, el)
	}
	if len(p) != 0 {
		return nil, bad("data after crlExtensions")
	}
	hdrDER := seq(seq(head...), algWhole, sigWhole)
	h, err := x509.ParseRevocationList(hdrDER)
	if err != nil {
		return nil, &Error{Reason: ReasonParse, Err: err}
	}
	h.Raw = der
	h.RawTBSRevocationList = tbsWhole
	if check != nil {
		if err := check(h); err != nil {
			return nil, err
		}
	}

	l := &List{Header: h, der: der, seed: maphash.MakeSeed(), sum: sha256.Sum256(der)}
	issuer := h.Issuer.String()
	for len(revoked) > 0 {
		off := cap(der) - cap(revoked)
		var entry []byte
		if entry, _, revoked, ok = expect(revoked, tagSequence); !ok {
			return nil, refuse(ReasonParse, issuer, "malformed entry at offset %d", off)
		}
		serial, err := checkEntry(entry)
		if err != nil {
			err.Issuer = issuer
			return nil, err
		}
		l.keys = append(l.keys, entryKey{h: maphash.Bytes(l.seed, serial), off: uint32(off)})
	}
	l.bucket()
	return l, nil
}

// bucket groups keys by the top bits of their hash, about one entry a bucket.
func (l *List) bucket() {
	nb := uint(bits.Len(uint(len(l.keys))))
	l.shift = 64 - nb
	l.start = make([]uint32, 1<<nb+1)
	for _, k := range l.keys {
		l.start[k.h>>l.shift+1]++
	}
	for i := 1; i < len(l.start); i++ {
		l.start[i] += l.start[i-1]
	}
	out := make([]entryKey, len(l.keys))
	next := slices.Clone(l.start[:len(l.start)-1])
	for _, k := range l.keys {
		b := k.h >> l.shift
		out[next[b]] = k
		next[b]++
	}
	l.keys = out
}

// seq wraps DER elements in a SEQUENCE.
func seq(parts ...[]byte) []byte {
	n := 0
	for _, x := range parts {
		n += len(x)
	}
	out := make([]byte, 0, n+6)
	out = append(out, tagSequence)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, x := range parts {
		out = append(out, x...)
	}
	return out
}

// DER of the entry extension identifiers imagetrust knows.
var (
	oidReasonCode        = []byte{0x55, 0x1d, 0x15} // 2.5.29.21
	oidInvalidityDate    = []byte{0x55, 0x1d, 0x18} // 2.5.29.24
	oidCertificateIssuer = []byte{0x55, 0x1d, 0x1d} // 2.5.29.29
)

// checkEntry checks one revokedCertificates entry (its SEQUENCE contents)
// and returns the serial number's INTEGER contents.
func checkEntry(e []byte) ([]byte, *Error) {
	bad := func(what string) *Error { return refuse(ReasonParse, "", "malformed entry: %s", what) }
	serial, _, rest, ok := expect(e, tagInteger)
	if !ok || !minimalInteger(serial) {
		return nil, bad("serial number")
	}
	tag, tv, _, rest, ok := element(rest)
	if !ok {
		return nil, bad("revocationDate")
	}
	if _, ok := parseTime(tag, tv); !ok {
		return nil, bad("revocationDate")
	}
	if len(rest) == 0 {
		return serial, nil
	}
	exts, _, rest, ok := expect(rest, tagSequence)
	if !ok || len(rest) != 0 {
		return nil, bad("crlEntryExtensions")
	}
	var seen [3]bool
	for len(exts) > 0 {
		var ext []byte
		if ext, _, exts, ok = expect(exts, tagSequence); !ok {
			return nil, bad("extension")
		}
		oid, crit, val, ok := splitExtension(ext)
		if !ok {
			return nil, bad("extension")
		}
		switch {
		case bytes.Equal(oid, oidReasonCode):
			if seen[0] {
				return nil, bad("duplicate reasonCode")
			}
			seen[0] = true
			if _, ok := reasonValue(val); !ok {
				return nil, bad("reasonCode")
			}
		case bytes.Equal(oid, oidInvalidityDate):
			if seen[1] {
				return nil, bad("duplicate invalidityDate")
			}
			seen[1] = true
		case bytes.Equal(oid, oidCertificateIssuer):
			return nil, refuse(ReasonUnsupported, "", "certificateIssuer entry extension: indirect CRLs are not supported")
		default:
			if crit {
				return nil, refuse(ReasonUnsupported, "", "unknown critical entry extension %x", oid)
			}
		}
	}
	return serial, nil
}

// splitExtension reads Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue }.
func splitExtension(ext []byte) (oid []byte, critical bool, value []byte, ok bool) {
	oid, _, rest, ok := expect(ext, tagOID)
	if !ok || len(oid) == 0 {
		return nil, false, nil, false
	}
	if peek(rest, tagBoolean) {
		var b []byte
		if b, _, rest, ok = expect(rest, tagBoolean); !ok || len(b) != 1 || (b[0] != 0 && b[0] != 0xff) {
			return nil, false, nil, false
		}
		critical = b[0] == 0xff
	}
	value, _, rest, ok = expect(rest, tagOctetString)
	if !ok || len(rest) != 0 {
		return nil, false, nil, false
	}
	return oid, critical, value, true
}

// reasonValue decodes the CRLReason ENUMERATED inside a reasonCode extension.
func reasonValue(v []byte) (int, bool) {
	c, _, rest, ok := expect(v, tagEnumerated)
	if !ok || len(rest) != 0 || len(c) != 1 || c[0] > ReasonAACompromise || c[0] == 7 {
		return 0, false
	}
	return int(c[0]), true
}

// parseTime reads a UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime
// (YYYYMMDDHHMMSSZ), the only forms RFC 5280 allows, without time.Parse.
func parseTime(tag byte, b []byte) (time.Time, bool) {
	var year int
	switch {
	case tag == tagUTCTime && len(b) == 13:
		y, ok := digits(b[0:2])
		if !ok {
			return time.Time{}, false
		}
		year = 1900 + y
		if y < 50 {
			year = 2000 + y
		}
		b = b[2:]
	case tag == tagGeneralizedTime && len(b) == 15:
		y, ok := digits(b[0:4])
		if !ok {
			return time.Time{}, false
		}
		year = y
		b = b[4:]
	default:
		return time.Time{}, false
	}
	if b[10] != 'Z' {
		return time.Time{}, false
	}
	var f [5]int
	for i := range f {
		v, ok := digits(b[2*i : 2*i+2])
		if !ok {
			return time.Time{}, false
		}
		f[i] = v
	}
	mo, d, hh, mm, ss := f[0], f[1], f[2], f[3], f[4]
	if mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mo), d, hh, mm, ss, 0, time.UTC)
	if t.Day() != d {
		return time.Time{}, false // 31 April and the like
	}
	return t, true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Len is the number of entries.
func (l *List) Len() int { return len(l.keys) }

// DER returns the CRL's DER (do not modify it).
func (l *List) DER() []byte { return l.der }

// Fingerprint is the SHA-256 of the CRL's DER.
func (l *List) Fingerprint() [32]byte { return l.sum }

// serialBytes returns the DER INTEGER contents of n.
func serialBytes(n *big.Int) []byte {
	der, err := asn1.Marshal(n)
	if err != nil {
		return nil
	}
	c, _, _, _ := expect(der, tagInteger)
	return c
}

// serialInto is serialBytes written into buf when n is not negative and
// fits (a certificate serial number: at most 20 octets), else serialBytes.
// The contents are the big-endian magnitude, minimal, with a leading zero
// octet when its high bit is set (X.690 8.3), as asn1.Marshal writes them.
func serialInto(buf *[40]byte, n *big.Int) []byte {
	if n.Sign() < 0 || n.BitLen() > 8*(len(buf)-1) {
		return serialBytes(n)
	}
	if n.Sign() == 0 {
		buf[0] = 0
		return buf[:1]
	}
	size := (n.BitLen() + 7) / 8
	b := n.FillBytes(buf[len(buf)-size:])
	if b[0]&0x80 != 0 {
		buf[len(buf)-size-1] = 0
		return buf[len(buf)-size-1:]
	}
	return b
}

// Find returns the first entry of the CRL for the serial number, decoded.
// A CRL may list a serial more than once; revocation decisions use
// FindAll.
func (l *List) Find(serial *big.Int) (*x509.RevocationListEntry, bool) {
	var first *x509.RevocationListEntry
	l.each(serial, func(e *x509.RevocationListEntry) bool { first = e; return false })
	return first, first != nil
}

// FindAll returns every entry of the CRL for the serial number, decoded,
// in CRL order (nil: none). RFC 5280 does not forbid a CA to list a serial
// twice (a hold and its later keyCompromise, a tool that appends): each
// entry is a statement of the CA, and the first is not the whole story.
func (l *List) FindAll(serial *big.Int) []*x509.RevocationListEntry {
	var out []*x509.RevocationListEntry
	l.each(serial, func(e *x509.RevocationListEntry) bool { out = append(out, e); return true })
	return out
}

// each calls f with the entries for the serial number, in CRL order, while
// f returns true.
func (l *List) each(serial *big.Int, f func(*x509.RevocationListEntry) bool) {
	if serial == nil {
		return
	}
	var buf [40]byte
	want := serialInto(&buf, serial)
	h := maphash.Bytes(l.seed, want)
	b := h >> l.shift
	for _, k := range l.keys[l.start[b]:l.start[b+1]] {
		if k.h != h {
			continue
		}
		e, whole, _, _ := expect(l.der[k.off:], tagSequence)
		s, _, _, _ := expect(e, tagInteger)
		if bytes.Equal(s, want) && !f(decodeEntry(whole, e)) {
			return
		}
	}
}

// decodeEntry builds the standard library's form of an entry checked by checkEntry.
func decodeEntry(whole, e []byte) *x509.RevocationListEntry {
	_, serialWhole, rest, _ := expect(e, tagInteger)
	out := &x509.RevocationListEntry{Raw: whole, SerialNumber: new(big.Int)}
	_, _ = asn1.Unmarshal(serialWhole, &out.SerialNumber)
	tag, tv, _, rest, _ := element(rest)
	out.RevocationTime, _ = parseTime(tag, tv)
	if len(rest) == 0 {
		return out
	}
	exts, _, _, _ := expect(rest, tagSequence)
	for len(exts) > 0 {
		var ext, extWhole []byte
		ext, extWhole, exts, _ = expect(exts, tagSequence)
		oid, crit, val, _ := splitExtension(ext)
		var pe pkix.Extension
		_, _ = asn1.Unmarshal(extWhole, &pe)
		pe.Critical = crit
		out.Extensions = append(out.Extensions, pe)
		if bytes.Equal(oid, oidReasonCode) {
			out.ReasonCode, _ = reasonValue(val)
		}
	}
	return out
}
