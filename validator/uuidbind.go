package validator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

// UUIDNamespace is the namespace of bound image uuids (docs/formats.md,
// "Bound uuids"): a descriptor with a uuid_seed has the uuid
// BoundUUID(vo, seed), the name-based version 5 UUID (RFC 9562 §5.5) of the
// name VO, a line feed, seed in this namespace. It never changes: every
// bound uuid ever published depends on it.
var UUIDNamespace = uuid.MustParse("c06a2624-56d1-4987-b9f4-be308e3543c7")

// UUIDSeedLen is the length of a uuid_seed: 32 lower-case hex digits, the
// 128 random bits NewUUIDSeed draws.
const UUIDSeedLen = 32

var uuidSeedRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ErrUUIDNotBound: a descriptor's uuid is not the one its VO and uuid_seed
// give (BoundUUID), or, where the site requires bound uuids, it has no
// uuid_seed.
var ErrUUIDNotBound = errors.New("uuid not bound to the VO")

// BoundUUID is the uuid a descriptor of VO vo with uuid_seed seed must
// carry: the version 5 UUID of vo "\n" seed in UUIDNamespace, in canonical
// lower-case form. A VO name holds no line feed (ValidName), so no two
// (vo, seed) pairs name the same string; another VO would need a SHA-1
// preimage to publish under a VO's bound uuid.
func BoundUUID(vo, seed string) string {
	return uuid.NewSHA1(UUIDNamespace, []byte(vo+"\n"+seed)).String()
}

// NewUUIDSeed draws a uuid_seed from crypto/rand.
func NewUUIDSeed() (string, error) {
	b := make([]byte, UUIDSeedLen/2)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ValidUUIDSeed reports whether s is a well-formed uuid_seed.
func ValidUUIDSeed(s string) bool { return uuidSeedRE.MatchString(s) }

// Bound reports whether the descriptor's uuid is bound to its VO: it
// carries a uuid_seed and its uuid is BoundUUID of its VO and that seed.
func (d *Descriptor) Bound() bool {
	return d.UUIDSeed != "" && d.UUID == BoundUUID(d.VO, d.UUIDSeed)
}

// checkBinding returns an error wrapping ErrUUIDNotBound when the
// descriptor carries a uuid_seed its uuid does not follow from, or, with
// require, carries none.
func (d *Descriptor) checkBinding(require bool) error {
	switch {
	case d.UUIDSeed == "" && require:
		return fmt.Errorf("%w: the descriptor has no uuid_seed, and this site requires bound uuids (trust.require_bound_uuids): describe the image again (imagetrust describe binds the uuid to the VO by default)", ErrUUIDNotBound)
	case d.UUIDSeed == "":
		return nil
	case !d.Bound():
		return fmt.Errorf("%w: uuid %s is not the one vo %s and uuid_seed %s give (%s): the uuid was altered, or the seed is another VO's", ErrUUIDNotBound, d.UUID, quoteShort(d.VO), d.UUIDSeed, BoundUUID(d.VO, d.UUIDSeed))
	}
	return nil
}
