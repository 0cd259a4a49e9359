package crl

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrNoTrust is the error of CheckTrust (and of Job.Run with a
// JobConfig.Chains that trusts no CA on one side) when one side of the
// trust is empty: no image's chains can then lead to it, and the job would
// flip the whole catalogue to "unknown" because of a configuration mistake
// (an emptied file, a wiped directory). The job refuses to run instead.
var ErrNoTrust = errors.New("the trust configuration trusts no image")

// ChainChecker judges whether the chains of an image record still lead to
// the site's trust anchors, as the verifier builds them: the people CAs, to
// which creators and approvers chain, and the Registrar CAs, to which
// image certificates chain. validator.Trust, which the proxy boots images
// against, is the one implementation (validator imports crl, so the rule
// lives there and the job takes it as this interface); see its
// CheckRecordChains for the rule.
//
// A Job remembers the verdicts across its runs (by the SHA-256 of
// imagetrust_signature and imagetrust_chain), so a checker's answer must
// depend only on those properties and on the checker, which must not
// change for the Job's life (a reload builds a new Job). It must be safe
// for concurrent use.
type ChainChecker interface {
	// CheckRecordChains returns why the chains of the record whose
	// catalogue properties are props no longer lead to the trust anchors
	// (the reason an image becomes unknown, as the report shows it), or
	// nil when they do.
	CheckRecordChains(props map[string]string) error
	// AnchorCounts returns how many people CAs and Registrar CAs the
	// checker trusts (CheckTrust).
	AnchorCounts() (people, registrar int)
}

// CheckTrust refuses (ErrNoTrust) a checker that trusts no people CA or
// no Registrar CA: no record's chains could lead to it, and every image
// would become unknown. cmd/imagetrust calls it when it reads the
// configuration, Job.Run before each run.
func CheckTrust(c ChainChecker) error {
	switch p, r := c.AnchorCounts(); {
	case p == 0 && r == 0:
		return fmt.Errorf("%w: no people CA and no Registrar CA", ErrNoTrust)
	case p == 0:
		return fmt.Errorf("%w: no people CA (trust.ca_files, trust.ca_dirs): no creator or approver can chain to one", ErrNoTrust)
	case r == 0:
		return fmt.Errorf("%w: no Registrar CA (trust.registrar_ca_files): no image certificate can chain to one", ErrNoTrust)
	}
	return nil
}

// MassUntrustedPercent is the share of the catalogue's images (percent)
// above which a run that turns images unknown for want of trust warns
// (Report.Warnings, the log): a CA removed from [trust] by mistake shows at
// once, with the count; one removed on purpose does the same, once.
const MassUntrustedPercent = 10

// trustMemo remembers, by the SHA-256 of a record's imagetrust_signature
// and imagetrust_chain, why the Job's ChainChecker refused it ("" when it
// did not), from one run of a Job to the next: the verdict depends only on
// those bytes and the checker (see ChainChecker), and the checker of a Job
// does not change (a reload builds a new Job, with a new memo). A run keeps
// only its records' verdicts, at most maxSigMemo.
type trustMemo struct {
	prev     map[[32]byte]string
	cur      map[[32]byte]string
	computed int // CheckRecordChains calls of the last run (tests)
}

// begin starts a run over c (nil: no check) and returns its judge: why a
// record's chains no longer lead to c's anchors, or "".
func (t *trustMemo) begin(c ChainChecker) func(props map[string]string) string {
	t.computed = 0
	if c == nil {
		t.prev, t.cur = nil, nil
		return func(map[string]string) string { return "" }
	}
	prev, cur := t.prev, map[[32]byte]string{}
	t.cur = cur
	return func(props map[string]string) string {
		sig, chain := props[PropSignature], props[PropChain]
		h := sha256.New()
		var n [8]byte
		for i, l := 0, uint64(len(sig)); i < 8; i++ {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(sig))
		h.Write([]byte(chain))
		var key [32]byte
		copy(key[:], h.Sum(nil))
		if v, ok := cur[key]; ok {
			return v
		}
		v, ok := prev[key]
		if !ok {
			t.computed++
			if err := c.CheckRecordChains(props); err != nil {
				v = err.Error()
			}
		}
		if len(cur) < maxSigMemo {
			cur[key] = v
		}
		return v
	}
}

// end keeps this run's verdicts for the next.
func (t *trustMemo) end() { t.prev, t.cur = t.cur, nil }
