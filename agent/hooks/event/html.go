package event

import (
	"html"
	"strings"
)

// htmlText renders HTML as plain text, roughly: tags and comments are
// dropped with the content of script, style and head, entities are decoded,
// block elements break lines, and runs of spaces become one.
func htmlText(s string) string {
	lower := asciiLower(s) // the same offsets as s
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			b.WriteString(html.UnescapeString(s[i:]))
			break
		}
		b.WriteString(html.UnescapeString(s[i : i+j]))
		i += j
		if !isTagStart(s[i+1:]) {
			b.WriteByte('<')
			i++
			continue
		}
		if strings.HasPrefix(s[i:], "<!--") {
			k := strings.Index(s[i+4:], "-->")
			if k < 0 {
				break
			}
			i += 4 + k + 3
			continue
		}
		k := strings.IndexByte(s[i:], '>')
		if k < 0 {
			break
		}
		name, closing := tagName(lower[i+1 : i+k])
		i += k + 1
		switch name {
		case "script", "style", "head":
			if closing {
				break
			}
			end := strings.Index(lower[i:], "</"+name)
			if end < 0 {
				i = len(s)
			} else {
				i += end
			}
		case "br", "p", "div", "tr", "li", "ul", "ol", "table", "blockquote", "pre", "hr",
			"h1", "h2", "h3", "h4", "h5", "h6":
			b.WriteByte('\n')
		}
	}
	return tidy(b.String())
}

// isTagStart reports whether s, what follows a '<', starts a tag, a
// closing tag, a comment or a declaration.
func isTagStart(s string) bool {
	if s == "" {
		return false
	}
	c := s[0] | 0x20
	return 'a' <= c && c <= 'z' || s[0] == '/' || s[0] == '!' || s[0] == '?'
}

// tagName is the name of the tag whose text, lower case and without the
// angle brackets, is t, and whether it closes an element.
func tagName(t string) (name string, closing bool) {
	t, closing = strings.CutPrefix(t, "/")
	n := 0
	for n < len(t) && ('a' <= t[n] && t[n] <= 'z' || '0' <= t[n] && t[n] <= '9') {
		n++
	}
	return t[:n], closing
}

// asciiLower lower-cases the ASCII letters of s, leaving every other byte.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// tidy collapses runs of spaces to one, trims lines, and keeps at most one
// empty line in a row and none at the start or end.
func tidy(s string) string {
	var lines []string
	blank := true
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" {
			if !blank {
				lines = append(lines, "")
			}
			blank = true
			continue
		}
		lines = append(lines, line)
		blank = false
	}
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	return strings.Join(lines, "\n")
}
