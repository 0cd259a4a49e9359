package pki

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1" //nolint:gosec // PBKDF2-HMAC-SHA1 is PKCS#5's default PRF; needed to read such keys
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
)

// Passphrase supplies the passphrase of an encrypted key when one is met.
type Passphrase func() ([]byte, error)

// ReadPrivateKey reads a PEM private key file: PKCS#8, PKCS#1 (RSA), SEC1
// (EC), PKCS#8 encrypted with PBES2 (PBKDF2 and AES-CBC, as `openssl genpkey
// -aes256` and `openssl pkcs8 -topk8` write) or OpenSSL's legacy
// Proc-Type encryption.
func ReadPrivateKey(path string, pass Passphrase) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(b, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKey parses a PEM private key (see ReadPrivateKey).
func ParsePrivateKey(b []byte, pass Passphrase) (crypto.Signer, error) {
	blk, rest := pem.Decode(b)
	// skip what comes before the key: "EC PARAMETERS" (openssl ecparam
	// -genkey writes it first), a certificate in the same file
	for blk != nil && !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
		blk, rest = pem.Decode(rest)
	}
	if blk == nil {
		return nil, errors.New("no PEM private key found")
	}
	der := blk.Bytes
	switch {
	case blk.Type == "ENCRYPTED PRIVATE KEY":
		if pass == nil {
			return nil, errors.New("key is encrypted and no passphrase was given")
		}
		pw, err := pass()
		if err != nil {
			return nil, err
		}
		if der, err = decryptPKCS8(der, pw); err != nil {
			return nil, err
		}
		return parseDecrypted(der, "PRIVATE KEY")
	case blk.Headers["Proc-Type"] == "4,ENCRYPTED":
		if pass == nil {
			return nil, errors.New("key is encrypted and no passphrase was given")
		}
		pw, err := pass()
		if err != nil {
			return nil, err
		}
		//lint:ignore SA1019 reading legacy OpenSSL-encrypted keys needs it; the format is insecure but still met
		der, err = x509.DecryptPEMBlock(blk, pw) //nolint:staticcheck
		if err != nil {
			return nil, fmt.Errorf("decrypt key: %w", err)
		}
		return parseDecrypted(der, blk.Type)
	}
	return parseDER(der, blk.Type)
}

// parseDecrypted parses a key just decrypted. The padding check that
// catches a wrong passphrase lets about one in 256 through (the garbage
// then ends in a valid pad byte); such a key does not parse, and the error
// says what most likely happened.
func parseDecrypted(der []byte, typ string) (crypto.Signer, error) {
	k, err := parseDER(der, typ)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: wrong passphrase, or the key is corrupt: %w", err)
	}
	return k, nil
}

func parseDER(der []byte, typ string) (crypto.Signer, error) {
	var k any
	var err error
	switch typ {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(der)
	default:
		k, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF pkix.AlgorithmIdentifier
	Enc pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt      []byte
	Iter      int
	KeyLength int                      `asn1:"optional"`
	PRF       pkix.AlgorithmIdentifier `asn1:"optional"`
}

func decryptPKCS8(der, pw []byte) ([]byte, error) {
	var epki encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(der, &epki); err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	if !epki.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encrypted key: unsupported scheme %v (only PBES2)", epki.Algo.Algorithm)
	}
	var p pbes2Params
	if _, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &p); err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("encrypted key: unsupported KDF %v (only PBKDF2)", p.KDF.Algorithm)
	}
	var kp pbkdf2Params
	if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	if kp.Iter <= 0 || kp.Iter > 10_000_000 {
		return nil, fmt.Errorf("encrypted key: PBKDF2 iteration count %d out of range", kp.Iter)
	}
	var prf func() hash.Hash
	switch {
	case len(kp.PRF.Algorithm) == 0 || kp.PRF.Algorithm.Equal(oidHMACSHA1):
		prf = sha1.New
	case kp.PRF.Algorithm.Equal(oidHMACSHA256):
		prf = sha256.New
	case kp.PRF.Algorithm.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("encrypted key: unsupported PRF %v", kp.PRF.Algorithm)
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch {
	case p.Enc.Algorithm.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("encrypted key: unsupported cipher %v", p.Enc.Algorithm)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil {
		return nil, fmt.Errorf("encrypted key: IV: %w", err)
	}
	key, err := pbkdf2.Key(prf, string(pw), kp.Salt, kp.Iter, keyLen)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	blk, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != blk.BlockSize() || len(epki.Data) == 0 || len(epki.Data)%blk.BlockSize() != 0 {
		return nil, errors.New("encrypted key: malformed ciphertext")
	}
	out := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(out, epki.Data)
	// PKCS#7 padding; a wrong passphrase almost always shows here
	n := int(out[len(out)-1])
	if n == 0 || n > blk.BlockSize() {
		return nil, errors.New("encrypted key: wrong passphrase")
	}
	for _, b := range out[len(out)-n:] {
		if int(b) != n {
			return nil, errors.New("encrypted key: wrong passphrase")
		}
	}
	return out[:len(out)-n], nil
}

// EncodeKeyPEM encodes a private key as unencrypted PKCS#8 PEM.
func EncodeKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertPEM encodes certificates as PEM.
func EncodeCertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
