package crl

// A minimal DER reader: enough to walk a CRL without allocating per entry.
// Only low tag numbers (< 31) and definite lengths up to 4 octets are read;
// anything else is refused, which is right for CRLs.

const (
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagOID             = 0x06
	tagEnumerated      = 0x0a
	tagBoolean         = 0x01
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
	tagExplicit0       = 0xa0
)

// element reads one DER element from b. It returns the tag, the contents,
// the whole element (header and contents) and what follows it.
func element(b []byte) (tag byte, content, whole, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, nil, false
	}
	tag = b[0]
	n := int(b[1])
	hdr := 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k || b[2] == 0 {
			return 0, nil, nil, nil, false
		}
		n = 0
		for i := 0; i < k; i++ {
			n = n<<8 | int(b[2+i])
		}
		if n < 0x80 {
			return 0, nil, nil, nil, false // not minimal
		}
		hdr += k
	}
	if n < 0 || len(b)-hdr < n {
		return 0, nil, nil, nil, false
	}
	return tag, b[hdr : hdr+n], b[:hdr+n], b[hdr+n:], true
}

// expect reads one element with the given tag.
func expect(b []byte, want byte) (content, whole, rest []byte, ok bool) {
	tag, content, whole, rest, ok := element(b)
	if !ok || tag != want {
		return nil, nil, nil, false
	}
	return content, whole, rest, true
}

// peek reports whether b starts with tag.
func peek(b []byte, tag byte) bool { return len(b) > 0 && b[0] == tag }

// minimalInteger reports whether the INTEGER contents are minimally encoded.
func minimalInteger(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if len(b) == 1 {
		return true
	}
	return !(b[0] == 0 && b[1]&0x80 == 0 || b[0] == 0xff && b[1]&0x80 == 0x80)
}
