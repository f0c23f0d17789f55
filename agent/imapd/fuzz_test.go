package imapd

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// FuzzContent feeds stored-message bytes of any shape to what FETCH and
// SEARCH read from content: nothing may panic or hang.
func FuzzContent(f *testing.F) {
	f.Add([]byte("Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nGyRCJEgbKEI=\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nx\r\n--b--\r\n"))
	f.Add([]byte("no header at all"))
	options := &imap.FetchOptions{
		Envelope:      true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{
			{}, {Specifier: imap.PartSpecifierText}, {Part: []int{1}}, {Part: []int{2, 1}, Specifier: imap.PartSpecifierHeader},
			{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}, {Partial: &imap.SectionPartial{Offset: 3, Size: 5}},
		},
		BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{1}}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := extract(data, options)
		if p.envelope == nil || len(p.sections) != len(options.BodySection) {
			t.Fatalf("extract: envelope %v, %d sections", p.envelope, len(p.sections))
		}
		bodyText(data)
	})
}
