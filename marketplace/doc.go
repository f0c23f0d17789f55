// Package marketplace holds the plugin marketplace: the package format,
// signing and verification (marketplace/pack), review, the catalog and
// recalls.
//
// # Packages
//
// A plugin is distributed as a .mairust-plugin file: a gzip-compressed tar
// of regular files and directories only (modes 0644 and 0755, no owners, a
// fixed time) holding
//
//   - manifest.json, first: {"format":1, "id", "version",
//     "min_mairust_version" (may be empty), "files": [{"path", "sha256",
//     "size", "mode"}]}, listing every other file, sorted by path, in the
//     canonical form pack.Manifest.Marshal writes;
//   - plugin.toml (agreeing with manifest.json), README.md, and icon.png
//     (a PNG; optional, but inspect warns without it);
//   - the plugin's other files, in any subdirectory;
//   - developer.sig (optional) and marketplace.sig (agents will require it):
//     {"key_id", "algorithm", "signature" (base64)}.
//
// developer.sig signs the bytes of manifest.json, with "ed25519" or
// "rsa-pss-sha256" (RSA-PSS over SHA-256, salt as long as the hash).
// marketplace.sig, Ed25519 only, signs SHA-256(manifest.json) followed by
// the bytes of developer.sig (nothing when absent). A key id is the first
// 16 hex digits of the SHA-256 of the public key's PKIX DER, unless the
// signer names its key otherwise. Keys are PKCS#8 (private) and PKIX
// (public) PEM files.
//
// # Library
//
// pack.Build and pack.Pack make a package from a plugin directory;
// pack.Open reads one into memory within pack.Limits, refusing unsafe
// entries (absolute or '..' paths, links, devices, setuid bits, sizes over
// the limits, gzip bombs); (*pack.Package).Sign adds a signature and Write
// writes the package back; Verify checks the files and the signatures
// against a pack.Trust (trusted keys by role, with an optional end date
// for rotation, and which signatures are required); Unpack, after Verify,
// writes the files into a new directory. pack.CheckCompatible compares a
// package's min_mairust_version with the running version.
//
// The command line is mairust plugin keygen, pack, sign, verify and
// inspect.
package marketplace
