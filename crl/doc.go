// Package crl reads certificate revocation lists and decides which
// catalogue images they revoke. It is used by the verifier (validator) and
// by the CRL job (`imagetrust crl`).
//
// # Core (pure: bytes, certificates and a time in)
//
// Decode and Parse read one CRL, DER or PEM ("X509 CRL"), refusing trailing
// data, several PEM blocks and more than MaxSize bytes. ParseList does the
// same into a compact List that keeps the entries in the DER and indexes
// them by a hash of the serial number: a CRL of a million entries parses in
// a fraction of `openssl crl -noout`'s time and takes about its own size in
// memory besides its bytes (16 bytes an entry). ParseListChecked runs a
// check on the header (the job's: the issuing CA's signature) before the
// entries are indexed, and the job reads or fetches one source at a time,
// so a forged CRL costs its bytes, not an index. Verify checks a CRL
// against the CA that should have issued it.
// Index holds accepted CRLs (AddList: Verify, thisUpdate not beyond
// now+ClockSkew, CRL number never lower, nor equal with other content) and
// answers lookups by issuer AND serial. Check and CheckChain apply
// RevocationApplies, the one revocation rule of imagetrust.
// Every refusal is an *Error with a named Reason.
//
// # Matching catalogue records
//
// An image record lists every certificate of its three chains below the
// roots (imagetrust_chain: role, issuer, serial, aki). A CRL speaks for a
// certificate of the record when:
//
//   - the CRL's issuer, as pkix.Name.String() prints it, equals the
//     record's issuer string (both come from the same DER, printed by the
//     same function; the CRL itself was verified against a configured CA
//     whose raw subject equals the CRL's raw issuer);
//   - and, when the record has an aki and the CA has a subjectKeyIdentifier,
//     they are equal (a re-keyed CA of the same name is another CA);
//   - and the CRL has an entry whose serial number equals the record's
//     serial (DER INTEGER comparison).
//
// When several CAs share a name and the record has no aki, the CRLs of all
// of them speak for it: a revocation in any counts (the conservative
// choice). A CRL of another CA revoking the same serial never matches.
//
// # The job
//
// Job.Run loads the last good CRL of every CA and scope (a CA's CRLs with
// different issuingDistributionPoints, such as one of user certificates
// only and one of CA certificates only, or those of two distribution
// points, are each numbered, replaced and checked for rollback on their
// own, and all searched for revocations; a certificate's state is stale
// when the newest of its CA's CRLs that speak for it is, and uncovered
// under RequireCRL when there is none; a CRL speaks for a certificate
// when its kind (onlyContainsUserCerts, onlyContainsCACerts) takes it in
// and, when its issuingDistributionPoint names distribution points, one
// of their URIs equals, as bytes, one of the certificate's
// cRLDistributionPoints URIs (RFC 5280 6.3.3 (b)(2)(i); Ref.DistributionPoints,
// read by the job from the certificates the record's imagetrust_signature
// embeds and the CA certificates it knows, on runs where a CRL names a
// distribution point); delta,
// indirect and
// reason-partitioned CRLs are refused) from the cache directory,
// fetches every source (HTTP(S) with If-None-Match/If-Modified-Since, files,
// IGTF directories' <hash>.rN, optionally CRL distribution points), accepts
// or refuses each (Report.Refused names the reason), caches what it accepted
// atomically, then judges every catalogue image (Judge) and writes only what
// differs (Plan). A fetch that fails, or a CRL that is refused, leaves the
// last good CRL in use. A CRL past nextUpdate+grace is stale: under the
// refuse policy, images with a certificate it speaks for become "unknown"
// unless a CRL proves them revoked or held; under warn, they keep their
// state and the run warns. See Plan for the activation rules.
//
// Rollback is checked against two records: the cache's number of each CA
// and scope, and the catalogue's (catalogueFloor): every image the job
// flagged records the number and CRLScopeID (CA name and key, scope) of the
// CRL that flagged it, so a lower-numbered CRL of that CA, key and scope is
// refused even when the cache is lost or restored from an old backup. A
// CA accepted with no cached number is warned of ("first CRL seen"): on a
// first run expected, otherwise a lost cache.
//
// A CRL is accepted only from a CA of JobConfig.CAs (or of an IGTF
// directory source), or from an intermediate CA embedded in a catalogue
// record's imagetrust_signature that chains to one of them (EmbeddedCAs):
// the trust files may hold only roots, and the CRL of the intermediate that
// issued a creator, like the root's CRL that revokes that intermediate, is
// still accepted. An embedded certificate that does not chain is ignored.
//
// Which records are trusted is not what the CRLs say: JobConfig.Chains, a
// ChainChecker, judges each record's chains by the verifier's own rule.
// cmd/imagetrust gives it the proxy's validator.Trust (the people CAs of
// trust.ca_files and trust.ca_dirs, the Registrar CAs of
// trust.registrar_ca_files, read as the proxy reads them), whose
// CheckRecordChains asks of a record's imagetrust_signature, with Verify's
// code, what Verify asks of its chains: the image certificate chains to a
// Registrar root (at its notBefore, through no people CA), the creator and
// approver to a people root (at registration, or within their own
// validity), through the embedded certificates and the configured
// intermediates, with no weak CA key. (The rule lives in validator, which
// imports this package.) An image whose record fails is "unknown", with
// the reason ("image chain no longer leads to a configured Registrar CA:
// issuer X is not trusted"), unless a CRL revokes or holds it or it is
// already revoked; it is valid again once the CA is back. JobConfig.CAs,
// the IGTF directories of Sources and EmbeddedCAs only widen which CRLs
// are accepted: where they differ from the anchors, the anchors decide
// which images are trusted (the proxy refuses the others). The verdict
// depends only on the record's bytes and the checker, so a Job remembers
// it across runs (by the SHA-256 of imagetrust_signature and
// imagetrust_chain). CheckTrust, and Run, refuse a checker with no people
// CA or no Registrar CA (ErrNoTrust): that would flip the whole catalogue
// to unknown, a configuration mistake, not a rotation. A run that turns
// more than MassUntrustedPercent of the images unknown for want of trust
// warns with the count (Report.Warnings, the log); Report.Untrusted and
// imagetrust_crl_untrusted_images count such images after each run.
// Without a checker (nil) records are judged by CRLs alone.
//
// An image judged revoked or on hold whose data Glance is still writing
// (queued, saving, uploading, importing: the sync's upload under way)
// cannot be deactivated, and Glance, when the write ends, saves the image
// as it read it when the write began: the flag this run writes is lost and
// the image becomes active as valid (TestRevokedWhileUploading, against
// Glance Zed). Such images are listed in Report.InTransit; the daemon then
// runs again within TransitRecheck (a minute) rather than an interval, and
// `crl --once` exits 4 so that a cron job can run it again: the next run
// finds the image active and deactivates it.
//
// Glance saves whole images and has no compare-and-swap: a write of
// another client that overlaps one of the job's (the sync unhiding the
// image, an operator setting imagetrust_local_validity) can undo it
// without an error. After writing, the job reads each changed image again
// (Catalog.Get, after JobConfig.WriteSettle) and, when Plan from what it
// reads, with the same decision, still has something to do, writes that
// (at most MaxWriteAttempts times); what still does not hold is a
// Report.LostWrites (`crl --once` exits 4, the daemon runs again within
// TransitRecheck, imagetrust_crl_lost_writes_total). A write that fails,
// or whose check read fails, is an error (Report.FailedWrites), and the
// daemon runs again within TransitRecheck too. A reactivation is
// planned again from the image read just before it, and an image the job
// reactivated that carries a local flag when read again is deactivated
// again with the crl-hold marker. The job remembers the local flags it
// listed (the Job, and the cache directory) and warns of one gone at the
// next run (Report.LocalFlagsGone): it never writes the flag, so an
// operator removed it or a concurrent write lost it.
//
// # Cost of a run
//
// A run parses each distinct imagetrust_signature once (cms.Parse), and a
// Job remembers, across the runs of RunLoop, what each record's signature
// holds (by its SHA-256, the signatures of the last run's records only):
// an unchanged record then costs a hash, not a parse. Only parsing is
// remembered: which embedded CAs chain to the anchors is decided again
// every run. Each cached CRL is parsed and verified once a run; a source
// whose bytes are those of a CRL already parsed that run (an unchanged
// CRL) is not parsed again, only its signer and rollback checked. The
// judging answers which CRLs cover a certificate once per issuer, key and
// kind of certificate (and, with a CRL naming distribution points, set of
// points) a run. What grows with the catalogue is then one cms.Parse per
// new signature (a second one, remembered likewise, where a CRL names a
// distribution point: the record's certificates' points, pointsMemo), a
// hash per record and RecordRefs (the JSON of imagetrust_chain); with the number of CAs, one cached CRL read and
// signature check and one conditional GET each. With JobConfig.Chains, a
// record a Job has not judged before costs a chain check
// (validator.Trust.CheckRecordChains: about 1 ms on the shared 2-core
// machine, BenchmarkCheckRecordChains in validator, as Verify builds an
// image certificate's chain twice when its Registrar intermediate is only
// embedded; 10000 records, 10 s on a daemon's first run and after each
// reload), a record judged by the Job's last run a hash.
//
// # Performance
//
// Measured on a loaded, shared 2-core machine, the code before and after
// these changes run one after the other in one session (the ratios move by
// up to 2x from one run to the next there; the allocations do not):
//
//	go test -run '^$' -bench CRLJob -benchtime 2x ./crl
//	go test -run '^$' -bench EmbeddedCAs -benchtime 20x ./crl
//
// BenchmarkCRLJobScale, a warm run over ParseList of the CRL (x-parse):
// 10000 images, 100k entries: 56 -> 25 (1.5 s -> 0.36 s a run, 5.8M -> 0.66M
// allocations); 1000 images, 100k entries: 10 -> 4.3; 1000 images, 1M
// entries: 2.8 -> 3.1 on that run's noisier baseline (0.62 s -> 0.47 s, 500
// -> 350 MB allocated). Its records all carry one signature; with a
// signature each, 1000 records cost 110 ms on a first run and 10 ms on the
// next (BenchmarkEmbeddedCAs, BenchmarkEmbeddedCAsMemo).
// BenchmarkCRLJobManyCAs, a run over bare conditional GETs (x-fetch): 1000
// CAs 21 -> 9.7 (0.90 s -> 0.33 s, 455 -> 22 MB), 300 CAs 15 -> 7.3; what
// remains is mostly each cached CRL's signature check.
package crl
