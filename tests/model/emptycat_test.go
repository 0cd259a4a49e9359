package model

import (
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
)

// TestCRLJobEmptyCatalogue is the minimal form of a defect TestModel
// found: the trust files hold only the roots (docs/operator-guide.md: "the
// trust files may hold only the roots") and the CRLs come from the
// intermediate CAs, which the CRL job learns from the catalogue records'
// signatures. With no catalogue image (a new site before its first sync,
// or every image retired), it refused the intermediates' good CRLs as
// wrong-issuer and `imagetrust crl --once` exited 4, run after run. They
// judge no image: the job now warns that they are not used, and exits 0.
func TestCRLJobEmptyCatalogue(t *testing.T) {
	w := newWorld(t, 1)
	code, rep, stderr := w.runCRL()
	if code != 0 || len(rep.Refused) != 0 || countUnused(rep.Warnings) != 3 {
		for _, r := range rep.Refused {
			t.Logf("refused %s: %s (%s)", r.Source, r.Reason, r.Error)
		}
		t.Errorf("CRL job on an empty catalogue: exit %d, %d CRLs refused, warnings %q (want 0, none, the three intermediates' CRLs not used; %s is no reason to refuse them)\n%s",
			code, len(rep.Refused), rep.Warnings, crl.ReasonWrongIssuer, stderr)
	}
}

// countUnused counts a CRL report's warnings of a CRL not used.
func countUnused(warnings []string) int {
	n := 0
	for _, w := range warnings {
		if strings.Contains(w, " not used: ") {
			n++
		}
	}
	return n
}
