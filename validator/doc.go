// Package validator answers the one question imagetrust stands on: is this
// image bundle signed by an authorised Creator, approved by an authorised
// Approver, registered by a trusted Registrar, unexpired and unrevoked?
//
// It decides from bytes, certificate pools and a time passed in; it never
// reads the clock, the network or OpenStack.
//
// # Boot decisions and their cost
//
// DecideBoot re-verifies an image's stored record (its descriptor and CMS
// signature) once per distinct record per Trust, and keeps the verdict with
// what a decision reads (3 KiB a record) in a cache of at most two
// generations of 20 000 records; a warm decision hashes the two stored
// properties and compares the signed ones (a few microseconds). DecideTag
// decides the candidates of a tag newest first by their created property
// and stops at the first that may boot, so a tag of hundreds of images
// costs about one decision, warm or cold. Verify builds its pools of
// intermediates once. Measured on 2026-11-26 (2 shared cores), each line
// against a baseline of the same run:
//
//	BenchmarkDecideTag (x-uuid: a tag's warm decision / one warm DecideBoot)
//	  before: 39 / 379 / 687x for 30 / 100 / 300 images; cold 25 / 110 / 452 ms
//	  after:  3 / 4-12 / 7-46x; cold 0.8-1.3 ms at every size
//	  record cache: 20.2 -> 3.0 KiB a record
//	BenchmarkVerifyTrustSize (x-k0: Verify / Verify with no extra CAs)
//	  before: 1.42x with 100 extra people CAs, 3.82x with 1000
//	  after:  1.14x and 2.52x (what is left: the pool's hashing of each CA)
//
//	go test -run '^$' -bench 'DecideTag|VerifyTrustSize' -benchtime 20x ./validator
package validator
