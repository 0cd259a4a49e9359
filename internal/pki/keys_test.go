package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
)

func TestParsePrivateKeyForms(t *testing.T) {
	ec, err := NewKey(ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := NewKey(RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	pkcs1 := x509.MarshalPKCS1PrivateKey(rk.(*rsa.PrivateKey))
	pkcs8, _ := EncodeKeyPEM(ec)
	cases := map[string][]byte{
		"ok SEC1":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"ok PKCS#1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}),
		"ok PKCS#8": pkcs8,
		// openssl ecparam -genkey writes the curve first
		"ok SEC1 after EC PARAMETERS": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivateKey(b, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	for name, b := range map[string][]byte{
		"fail empty":                        nil,
		"fail garbage":                      []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"fail encrypted without passphrase": pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivateKey(b, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// encryptPKCS8 encrypts a PKCS#8 key as `openssl pkcs8 -topk8 -v2 aes256`
// does (PBES2, PBKDF2 with HMAC-SHA256, AES-256-CBC), with one PBKDF2
// iteration so that a test can try many passphrases.
func encryptPKCS8(t *testing.T, der, pw []byte) []byte {
	t.Helper()
	salt, iv := make([]byte, 8), make([]byte, aes.BlockSize)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(iv)
	key, err := pbkdf2.Key(sha256.New, string(pw), salt, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	n := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(append([]byte{}, der...), bytes.Repeat([]byte{byte(n)}, n)...)
	blk, _ := aes.NewCipher(key)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(ct, plain)
	kdf, _ := asn1.Marshal(pbkdf2Params{Salt: salt, Iter: 1, PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.NullRawValue}})
	ivDER, _ := asn1.Marshal(iv)
	params, _ := asn1.Marshal(pbes2Params{
		KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
		Enc: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{Algo: pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}}, Data: ct})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: out})
}

// TestWrongPassphraseAlwaysSaysSo: every wrong passphrase is reported as
// one, including the one in about 256 whose garbage passes the padding
// check (3000 tries: such a one is all but certain to be among them).
func TestWrongPassphraseAlwaysSaysSo(t *testing.T) {
	k, err := NewKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	enc := encryptPKCS8(t, der, []byte("right"))
	pass := func(s string) Passphrase { return func() ([]byte, error) { return []byte(s), nil } }
	if _, err := ParsePrivateKey(enc, pass("right")); err != nil {
		t.Fatalf("right passphrase: %v", err)
	}
	for i := range 3000 {
		_, err := ParsePrivateKey(enc, pass(fmt.Sprintf("wrong-%d", i)))
		if err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
			t.Fatalf("passphrase wrong-%d: %v", i, err)
		}
	}
}
