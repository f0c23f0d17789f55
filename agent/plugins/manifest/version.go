package manifest

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version (semver.org 2.0.0).
type Version struct {
	Major, Minor, Patch uint64
	Pre                 string // pre-release, e.g. "rc.1"
	Build               string // build metadata; ignored by Compare
}

// ParseVersion parses MAJOR.MINOR.PATCH[-PRE][+BUILD].
func ParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%q is not a semantic version: %s (write MAJOR.MINOR.PATCH, e.g. 1.0.0)", s, why)
	}
	var v Version
	rest, build, hasBuild := strings.Cut(s, "+")
	rest, pre, hasPre := strings.Cut(rest, "-")
	if hasBuild {
		if !validIdents(build, true) {
			return bad("bad build metadata")
		}
		v.Build = build
	}
	if hasPre {
		if !validIdents(pre, false) {
			return bad("bad pre-release")
		}
		v.Pre = pre
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("needs three numbers")
	}
	var n [3]uint64
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return bad("each number must be digits without leading zeros")
		}
		var err error
		if n[i], err = strconv.ParseUint(p, 10, 64); err != nil {
			return bad("number too large")
		}
	}
	v.Major, v.Minor, v.Patch = n[0], n[1], n[2]
	return v, nil
}

// validIdents checks dot-separated identifiers of [0-9A-Za-z-]; numeric
// pre-release identifiers may not have leading zeros.
func validIdents(s string, build bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" || strings.Trim(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") != "" {
			return false
		}
		if !build && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare returns -1, 0 or +1 as v is older than, as old as, or newer than w.
func (v Version) Compare(w Version) int {
	for _, d := range [][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			return cmpInt(d[0] < d[1])
		}
	}
	switch {
	case v.Pre == w.Pre:
		return 0
	case v.Pre == "":
		return 1 // a release is newer than its pre-releases
	case w.Pre == "":
		return -1
	}
	a, b := strings.Split(v.Pre, "."), strings.Split(w.Pre, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareIdent(a[i], b[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a) == len(b):
		return 0
	default:
		return cmpInt(len(a) < len(b))
	}
}

// compareIdent orders pre-release identifiers: numbers numerically and
// before words, words in ASCII order.
func compareIdent(a, b string) int {
	an, bn := isNumeric(a), isNumeric(b)
	switch {
	case an && bn:
		if len(a) != len(b) {
			return cmpInt(len(a) < len(b))
		}
	case an != bn:
		return cmpInt(an)
	}
	return strings.Compare(a, b)
}

func cmpInt(less bool) int {
	if less {
		return -1
	}
	return 1
}
