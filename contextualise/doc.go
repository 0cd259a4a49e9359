// Package contextualise merges a site's cloud-init context into the user_data
// of a Nova boot or rebuild request, so that the user's own data and the
// site's fragments both run.
//
// The result is a multipart/mixed MIME document as cloud-init parses it
// (cloudinit/user_data.py): a MIME-Version header in the first bytes, a random
// boundary found in no payload, the user's data kept byte for byte as the first
// part (an existing MIME document embedded whole), the site's scripts under
// filenames with a random token (imagetrust-<token>-NN-name) that no user part
// can share, and the site's cloud-config last with a Merge-Type header that
// appends lists and keeps the user's scalars. The user's data is refused
// (*UserDataError) when it is over Nova's limit before decoding, is not
// base64, or starts like gzip and does not decompress or expands past 1 MiB
// (maxDecompressed). When the base64 form is over
// Nova's 65535-character limit the document is gzipped, which cloud-init
// recognises by its magic bytes; when even that does not fit, Merge returns a
// *TooLargeError, which says what the site's context takes of the limit
// (a site context over the limit on its own is the site's fault: an
// ordinary error, not the user's). A server name a site template uses and
// the request leaves out, or gives with characters a template cannot take
// safely, is a *UserDataError whose Field is "server name".
//
// The package is pure: it reads the site directory once in LoadSite and never
// touches the network or the clock.
package contextualise
