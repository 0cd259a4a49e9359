package crl

import (
	"bytes"
	"math/big"
	"testing"
)

// TestSerialInto: the serial index key Find builds without asn1.Marshal
// is asn1.Marshal's INTEGER contents, for every size and sign.
func TestSerialInto(t *testing.T) {
	var ns []*big.Int
	for _, v := range []int64{0, 1, -1, 127, 128, 255, 256, -128, -129, 32767, 32768, 1 << 40} {
		ns = append(ns, big.NewInt(v))
	}
	for bits := 1; bits <= 400; bits++ {
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits))
		ns = append(ns, n, new(big.Int).Sub(n, big.NewInt(1)), new(big.Int).Neg(n))
	}
	for _, n := range ns {
		var buf [40]byte
		if got, want := serialInto(&buf, n), serialBytes(n); !bytes.Equal(got, want) {
			t.Fatalf("%s: %x, want %x", n, got, want)
		}
	}
}
