// Package version is the version of MaiRust this binary is: the release
// number plugins check their min_mairust_version against, and the VCS
// revision it was built from.
package version

import "runtime/debug"

// Number is the release of this source tree (semver).
const Number = "0.1.0"

// String is Number with the VCS revision when the build recorded one.
func String() string {
	v := Number
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return v
}
