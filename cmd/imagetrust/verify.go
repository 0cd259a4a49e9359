package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("verify", "judge a bundle: every check, exit 0 valid, 3 expired, 1 invalid, 2 usage or configuration error", cmdVerify)
	register("inspect", "show what a bundle claims, without judging it", cmdInspect)
}

func cmdVerify(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "verify", "--config imagetrust.toml [--at RFC3339] [--json] NAME.json")
	cfgPath := fs.String("config", "/etc/imagetrust/imagetrust.toml", "configuration file")
	at := fs.String("at", "", "judge at this time (RFC 3339) instead of now")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	imagePath := fs.String("image", "", "image file to check (default: the descriptor's uri when it is a local file)")
	noImage := fs.Bool("no-image", false, "skip the image bytes check")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	name := pos[0]
	now := nowFunc()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return fail(e, exitUsage, "verify: --at %q: not RFC 3339", *at)
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		if !flagSet(fs, "config") {
			return fail(e, exitUsage, "verify: %v: name the imagetrust.toml of the site you publish for with --config (imagetrust pki init DIR writes one for its demonstration PKI: DIR/imagetrust.toml)", err)
		}
		return fail(e, exitUsage, "verify: %v", err)
	}
	trust, warnings, err := validator.LoadTrust(cfg)
	if err != nil {
		return fail(e, exitUsage, "verify: trust configuration %s: %v", *cfgPath, err)
	}
	for _, w := range append(warnings, trust.StaleCRLs(now)...) {
		fmt.Fprintf(e.stderr, "imagetrust: warning: %s\n", w)
	}
	desc, err := readInput(name)
	if err != nil {
		return fail(e, exitUsage, "verify: %v", err)
	}
	sig, err := os.ReadFile(name + ".p7s")
	if errors.Is(err, os.ErrNotExist) {
		return fail(e, exitInvalid, "verify: check signatures: %s is not signed: there is no %s.p7s: the creator signs first (imagetrust sign), the approver approves, the Registrar registers", name, name)
	}
	if err != nil {
		return fail(e, exitInvalid, "verify: check signatures: %v", err)
	}
	in := validator.Input{Descriptor: desc, Signature: sig, Now: now}
	if !*noImage {
		p := *imagePath
		if p == "" {
			p = localImagePath(name, desc)
		}
		if p != "" {
			f, err := os.Open(p)
			if err != nil && *imagePath != "" {
				return fail(e, exitUsage, "verify: --image: %v", err)
			}
			if err != nil {
				return fail(e, exitInvalid, "verify: check image: %v", err)
			}
			defer f.Close()
			in.Image = f
		}
	}
	r := trust.Verify(in)
	defer listingHint(e, "verify", name, desc)
	if *asJSON {
		out := struct {
			File string `json:"file"`
			*validator.Result
			At time.Time `json:"at"`
		}{name, r, now.UTC()}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		printResult(e.stdout, name, r)
	}
	if hint := configHint(r, *cfgPath); hint != "" {
		fmt.Fprintf(e.stderr, "imagetrust: verify: %s\n", hint)
	}
	switch {
	case r.Valid:
		return exitOK
	case r.ExpiredOnly:
		return exitExpired
	}
	return exitInvalid
}

// localImagePath resolves a descriptor's uri to a local file, or "".
func localImagePath(name string, desc []byte) string {
	d, err := validator.ParseDescriptor(desc)
	if err != nil {
		return ""
	}
	local, _, err := validator.ImageLocation(d.URI)
	if err != nil || local == "" || filepath.IsAbs(local) {
		return local
	}
	return filepath.Join(filepath.Dir(name), filepath.FromSlash(local))
}

func printResult(w io.Writer, name string, r *validator.Result) {
	fmt.Fprintf(w, "%s\n", name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var failed []string // the checks failed so far, named by a skipped one
	for _, c := range r.Checks {
		status := "ok"
		switch {
		case c.Skipped:
			status = "skip"
		case !c.OK:
			status = "FAIL"
			failed = append(failed, c.Name)
		}
		detail := c.Detail
		if detail == "" && c.Skipped && c.Reason == validator.ReasonPrerequisiteMissing && len(failed) > 0 {
			detail = "not judged, as " + strings.Join(failed, ", ") + " failed"
		}
		switch {
		case c.Reason != "" && !c.OK && detail != "":
			detail = c.Reason + ": " + detail
		case c.Reason != "" && !c.OK:
			detail = c.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, status, printable(detail))
	}
	_ = tw.Flush()
	switch {
	case r.Valid:
		fmt.Fprintf(w, "VALID until %s\n", r.ExpiresAt.UTC().Format(time.RFC3339))
	case r.ExpiredOnly:
		fmt.Fprintf(w, "EXPIRED on %s (otherwise valid; a site may run it anyway)\n", r.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		var names []string
		for _, c := range r.Failed() {
			names = append(names, c.Name+" ("+printable(c.Reason)+")")
		}
		fmt.Fprintf(w, "INVALID: %s\n", strings.Join(names, ", "))
	}
}

// cmdInspect shows what a bundle claims. Everything it prints from the
// bundle (the descriptor's fields, the signers' names, parse errors) is
// untrusted and passes through printable: a title or a certificate name
// can't forge lines or colours. Exit 0: the descriptor is valid and every
// signature (if any) verifies over it; 1: the descriptor or a signature is
// invalid (trust is not judged: that is verify).
func cmdInspect(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "inspect", "NAME.json")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return usageExit(err)
	}
	name := pos[0]
	desc, err := readInput(name)
	if err != nil {
		return fail(e, exitUsage, "inspect: %v", err)
	}
	w := e.stdout
	code := exitOK
	d, derr := validator.ParseDescriptor(desc)
	if derr != nil {
		fmt.Fprintf(w, "descriptor %s: INVALID: %s\n", name, printable(derr.Error()))
		code = exitInvalid
		defer listingHint(e, "inspect", name, desc)
	} else {
		fmt.Fprintf(w, "descriptor %s\n", name)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, kv := range [][2]string{
			{"uuid", d.UUID}, {"vo", d.VO}, {"tag", d.Tag}, {"title", d.Title}, {"created", d.Created},
			{"uri", d.URI}, {"size", fmt.Sprint(d.Size)}, {"sha512", d.SHA512},
			{"format", d.DiskFormat + "/" + d.ContainerFormat},
		} {
			if kv[1] != "" {
				fmt.Fprintf(tw, "  %s\t%s\n", kv[0], printable(kv[1]))
			}
		}
		switch {
		case d.UUIDSeed == "":
			fmt.Fprintf(tw, "  uuid_seed\tnone: the uuid is not bound to the VO\n")
		case d.Bound():
			fmt.Fprintf(tw, "  uuid_seed\t%s (binds the uuid to the VO)\n", d.UUIDSeed)
		default:
			// every site refuses it, whatever its configuration
			fmt.Fprintf(tw, "  uuid_seed\t%s: INVALID: with vo %s it gives uuid %s, not this one (%s)\n", d.UUIDSeed, printable(d.VO), validator.BoundUUID(d.VO, d.UUIDSeed), validator.ReasonUUIDNotBound)
			code = exitInvalid
		}
		_ = tw.Flush()
	}
	p7, err := os.ReadFile(name + ".p7s")
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "signature: none (%s.p7s does not exist)\n", name)
		return code
	}
	if err != nil {
		return fail(e, exitInvalid, "inspect: %v", err)
	}
	sd, err := cms.Parse(p7)
	if err != nil {
		return fail(e, exitInvalid, "inspect: %s.p7s: %s", name, printable(err.Error()))
	}
	fmt.Fprintf(w, "signature %s.p7s: %d signers, %d certificates\n", name, len(sd.Signers), len(sd.Certificates))
	for i := range sd.Signers {
		s := &sd.Signers[i]
		c := s.Certificate
		role := "person"
		for _, u := range c.URIs {
			if strings.HasPrefix(u.String(), "urn:uuid:") {
				role = "image (" + printable(u.String()) + ")"
			}
		}
		fmt.Fprintf(w, "  signer %d: %s\n", i+1, role)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "    subject\t%s\n", printable(validatorOneLine(c.RawSubject, c.Subject.String())))
		fmt.Fprintf(tw, "    issuer\t%s\n", printable(validatorOneLine(c.RawIssuer, c.Issuer.String())))
		fmt.Fprintf(tw, "    serial\t%x\n", c.SerialNumber)
		fmt.Fprintf(tw, "    valid\t%s to %s\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintf(tw, "    algorithm\t%s\n", printable(fmt.Sprint(s.SignatureAlgorithm)))
		if !s.SigningTime.IsZero() {
			fmt.Fprintf(tw, "    signed at\t%s\n", s.SigningTime.UTC().Format(time.RFC3339))
		}
		if err := s.Verify(desc); err != nil {
			fmt.Fprintf(tw, "    signature\tDOES NOT VERIFY over %s: %s\n", name, printable(err.Error()))
			code = exitInvalid
		} else {
			fmt.Fprintf(tw, "    signature\tmatches %s (trust not judged: use verify)\n", name)
		}
		_ = tw.Flush()
	}
	return code
}

// printable is untrusted text made safe for a terminal and for one line:
// every printable rune is kept (ordinary UTF-8 names stay readable), a
// backslash is doubled, and anything else (C0 and C1 controls, DEL, bidi
// overrides and other format characters, invalid UTF-8) is written as a
// \x.., \u.... or \U........ escape.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += n
	}
	return b.String()
}

func validatorOneLine(raw []byte, fallback string) string {
	dn, err := validator.DNFromRaw(raw)
	if err != nil {
		return fallback
	}
	return dn.OneLine()
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// configHint: when a signer's chain or VO is unknown to the configuration
// (the checks that depend on which site's imagetrust.toml verify reads,
// not on the bundle alone), a line saying so: a publisher who verifies
// against the wrong configuration sees which file decided. "" otherwise.
func configHint(r *validator.Result, cfgPath string) string {
	var names []string
	for _, c := range r.Failed() {
		switch c.Reason {
		case validator.ReasonCreatorUntrusted, validator.ReasonApproverUntrusted, validator.ReasonImageCertUntrusted, validator.ReasonUnknownVO:
			names = append(names, c.Name+" ("+c.Reason+")")
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: judged by the CAs and VOs of %s (trust.ca_files, trust.ca_dirs, trust.registrar_ca_files, [vo.NAME]); is it the imagetrust.toml of the site you publish for?", strings.Join(names, ", "), cfgPath)
}

// listingHint: given a VO listing (imagetrust listing's VO.listing.json)
// instead of a descriptor, verify and inspect fail the descriptor check
// on its first field ("unknown field"); a line on stderr says what the
// file is and where it is checked. Nothing for any other file.
func listingHint(e *env, cmd, name string, doc []byte) {
	if _, err := validator.ParseDescriptor(doc); err == nil {
		return
	}
	if _, err := validator.ParseListing(doc); err != nil {
		return
	}
	fmt.Fprintf(e.stderr, "imagetrust: %s: %s is a VO listing (imagetrust listing), not an image descriptor: %s takes a NAME.json of an image; a site checks the listing when it syncs (docs/glancesync.md, \"Signed VO listings\")\n", cmd, name, cmd)
}
