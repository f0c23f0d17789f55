package submission

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkAddress checks that a recipient go-smtp has parsed (a non-empty
// local part, "@", a non-empty domain) is one the relay can deliver to.
func checkAddress(addr string) error {
	if err := addressError(addr); err != nil {
		return fmt.Errorf("<%s>: %w", printable(addr, 256), err)
	}
	return nil
}

// addressError says what is wrong with addr: it must be at most 254 bytes
// of UTF-8; its local part at most 64 bytes of atext, dots (anywhere, as in
// some old mobile carriers' addresses) and non-ASCII letters, not a quoted
// string (go-smtp has taken the quotes off); its domain a host name, not an
// address literal.
func addressError(addr string) error {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return errors.New("not of the form user@domain")
	}
	local, domain := addr[:at], addr[at+1:]
	switch {
	case len(addr) > 254 || !utf8.ValidString(addr):
		return errors.New("longer than 254 bytes or not UTF-8")
	case len(local) > 64 || strings.IndexFunc(local, badLocal) >= 0:
		return errors.New("the local part must be at most 64 letters, digits, dots and !#$%&'*+-/=?^_`{|}~")
	case len(domain) > 253:
		return errors.New("the domain is longer than 253 bytes")
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' || strings.IndexFunc(label, badDomain) >= 0 {
			return errors.New("the domain is not a host name: labels of letters, digits and hyphens separated by dots")
		}
	}
	return nil
}

// badLocal reports a character not allowed unquoted in a local part.
func badLocal(r rune) bool {
	return badDomain(r) && r != '.' && !strings.ContainsRune("!#$%&'*+/=?^_`{|}~", r)
}

// badDomain reports a character not allowed in a host name's label: ASCII
// other than letters, digits and '-', and C1 controls.
func badDomain(r rune) bool {
	ldh := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'
	return !ldh && r < 0xa0
}
