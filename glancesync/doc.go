// Package glancesync mirrors verified image bundles into Glance.
//
// A pass lists the sources (directory trees and HTTPS indexes: an index's
// descriptors and signatures are fetched 8 at a time, with conditional
// requests for the documents of its last listing; see IndexSource.List),
// verifies every bundle without its bytes (validator.Trust.Verify), and
// brings each valid one to an active Glance image whose id is the
// descriptor's uuid and whose properties carry the catalogue record. The
// bytes are read once and hashed while they stream into Glance, into its
// staging area (then the image is imported with glance-direct) or, with
// sync.ingest = "upload", as the image data; the last bytes are held back
// until size and sha512 match, so Glance never holds a complete unverified
// stream. The state a killed run leaves is resumed by the next one: see
// docs/glancesync.md.
package glancesync
