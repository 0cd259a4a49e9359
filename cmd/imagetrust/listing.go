package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("listing", "listing signer: write and sign a VO's listing of its images (VO.listing.json and .p7s)", cmdListing)
}

// maxListingLife bounds --expires: a site that receives no newer listing
// keeps a VO as the last one says until it expires (a source may freeze
// it so long), so a listing is short-lived and re-signed; sites refuse a
// longer one.
const maxListingLife = validator.MaxListingLife

// cmdListing writes a VO listing (docs/formats.md, "VO listing") naming
// the images of the descriptors given, and signs it with the listing
// signer's certificate, as sign does a descriptor.
func cmdListing(_ context.Context, e *env, args []string) int {
	fsl := newFlags(e, "listing", "--vo VO --expires DATE|DURATION --cert C --key K --out VO.listing.json [--serial N] [--empty] [--force] DESCRIPTOR.json...")
	var s signerFlags
	addSignerFlags(fsl, &s)
	vo := fsl.String("vo", "", "the VO (required): every descriptor must be of it")
	expires := fsl.String("expires", "", "when the listing expires (required): a date (RFC 3339) or a duration from now (7d, 168h), at most 90 days; re-sign before then")
	out := fsl.String("out", "", "the listing to write (required); its signature is written beside it, + .p7s. A directory source reads VO.listing.json at its root")
	serial := fsl.Uint64("serial", 0, "the listing's serial (default: the Unix time of issue); must be higher than that of any listing of the VO sites have taken")
	empty := fsl.Bool("empty", false, "allow a listing of no image: every image of the VO is withdrawn")
	force := fsl.Bool("force", false, "replace --out even when its serial is not lower than the new one")
	pos, err := parseArgs(fsl, args, 0, -1)
	if err != nil {
		return usageExit(err)
	}
	if *vo == "" || *expires == "" || *out == "" {
		fsl.Usage()
		return fail(e, exitUsage, "listing: --vo, --expires and --out are required")
	}
	if !validator.ValidName(*vo) {
		return fail(e, exitUsage, "listing: --vo %q is not a VO name", *vo)
	}
	if len(pos) == 0 && !*empty {
		fsl.Usage()
		return fail(e, exitUsage, "listing: no descriptor given: a listing of no image withdraws every image of VO %s (--empty to mean it)", *vo)
	}
	issued := nowFunc().UTC().Truncate(time.Second)
	notAfter, err := parseWhen(*expires, issued)
	if _, ok := err.(minutesError); ok {
		return fail(e, exitUsage, "listing: --expires: %q: m is minutes, not months: write days (7d; a listing lasts at most 90 days)", *expires)
	}
	if err != nil {
		return fail(e, exitUsage, "listing: --expires: %v", err)
	}
	notAfter = notAfter.UTC().Truncate(time.Second)
	if !notAfter.After(issued) {
		return fail(e, exitUsage, "listing: --expires %s is not in the future", notAfter.Format(time.RFC3339))
	}
	if notAfter.Sub(issued) > maxListingLife {
		return fail(e, exitUsage, "listing: --expires %s is more than 90 days away: a source could hold sites on this listing until then", notAfter.Format(time.RFC3339))
	}
	timeSerial := *serial == 0
	if timeSerial {
		*serial = uint64(issued.Unix())
	}
	ids := []string{}
	from := map[string]string{}
	for _, name := range pos {
		if filepath.Base(name) == filepath.Base(*out) || strings.HasSuffix(filepath.Base(name), glancesync.ListingFileSuffix) {
			// a glob of the source's root names the listing itself,
			// and the other VOs' listings of a shared tree (never a
			// bundle's descriptor: the sync skips them too)
			continue
		}
		b, err := readDescriptor(name)
		if err != nil {
			return signerErr(e, "listing", err)
		}
		d, _ := validator.ParseDescriptor(b)
		if d.VO != *vo {
			return fail(e, exitInvalid, "listing: %s is of VO %s, not %s", name, d.VO, *vo)
		}
		if prev, dup := from[d.UUID]; dup {
			return fail(e, exitInvalid, "listing: %s and %s have the same uuid %s", prev, name, d.UUID)
		}
		from[d.UUID] = name
		ids = append(ids, d.UUID)
	}
	if len(ids) == 0 && !*empty {
		return fail(e, exitUsage, "listing: no descriptor given but the listing itself (--empty to withdraw every image of VO %s)", *vo)
	}
	if prev, err := os.ReadFile(*out); err == nil && !*force {
		if l, err := validator.ParseListing(prev); err == nil && l.Serial >= *serial {
			hint := "--serial, or --force"
			if timeSerial && l.Serial < math.MaxUint64 {
				// (two listings within a second, or one of a clock ahead)
				hint = fmt.Sprintf("the default serial is the time of issue in seconds: run it again once that passes %d, or give --serial %d", l.Serial, l.Serial+1)
			}
			return fail(e, exitInvalid, "listing: %s has serial %d, not lower than %d: sites refuse a listing whose serial is not higher than one they took (%s)", *out, l.Serial, *serial, hint)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(e, exitUsage, "listing: --out: %v", err)
	}
	doc, err := json.Marshal(map[string]any{"version": validator.ListingVersion, "vo": *vo, "serial": *serial,
		"issued": issued.Format(time.RFC3339), "expires": notAfter.Format(time.RFC3339), "images": ids})
	if err != nil {
		return fail(e, exitInvalid, "listing: %v", err)
	}
	doc = append(doc, '\n')
	if _, err := validator.ParseListing(doc); err != nil {
		return fail(e, exitInvalid, "listing: %v", err) // too many images
	}
	cert, opts, key, err := s.load(e)
	if err != nil {
		return signerErr(e, "listing", err)
	}
	opts.SigningTime = issued
	if err := checkValidNow("listing signer", cert, opts.Chain, issued); err != nil {
		return fail(e, exitInvalid, "listing: %v", err)
	}
	if cert.NotAfter.Before(notAfter) {
		fmt.Fprintf(e.stderr, "imagetrust: listing: warning: the signer's certificate expires %s, before the listing (%s): sites refuse the listing from then\n",
			cert.NotAfter.UTC().Format(time.RFC3339), notAfter.Format(time.RFC3339))
	}
	der, err := cms.Sign(doc, cert, key, opts)
	if err != nil {
		return fail(e, exitInvalid, "listing: %v", err)
	}
	// two files, each replaced atomically: a site reading between the two
	// writes finds a document and a signature that do not match, refuses
	// the listing that pass (listing-bad-signature: nothing of the VO
	// retired or mirrored anew) and takes it the next
	if err := fsutil.WriteFileAtomic(*out, doc, 0o644); err != nil {
		return fail(e, exitInvalid, "listing: %v", err)
	}
	if err := fsutil.WriteFileAtomic(*out+".p7s", der, 0o644); err != nil {
		return fail(e, exitInvalid, "listing: %v", err)
	}
	fmt.Fprintf(e.stdout, "wrote %s (VO %s, serial %d, %s, expires %s) and %s.p7s, signed by %q\n",
		*out, *vo, *serial, countOf(len(ids), "image"), notAfter.Format(time.RFC3339), *out, validator.SubjectName(cert))
	return exitOK
}
