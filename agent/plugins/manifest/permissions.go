package manifest

import (
	"slices"
	"strings"
)

// BodyLevel is how much of a message body a plugin may read; levels are
// ordered, BodyNone < BodyPreview < BodyFull.
type BodyLevel int

// Body access levels.
const (
	BodyNone BodyLevel = iota
	BodyPreview
	BodyFull
)

var bodyNames = []string{"none", "preview", "full"}

func (l BodyLevel) String() string { return levelName(bodyNames, int(l)) }

// AttachmentLevel is how much of the attachments a plugin may read; levels
// are ordered, AttachmentsNone < AttachmentsMetadata < AttachmentsPreview <
// AttachmentsFull.
type AttachmentLevel int

// Attachment access levels.
const (
	AttachmentsNone     AttachmentLevel = iota
	AttachmentsMetadata                 // file name, size and MIME type
	AttachmentsPreview                  // small files or the first KiB of text ones
	AttachmentsFull
)

var attachmentNames = []string{"none", "metadata", "preview", "full"}

func (l AttachmentLevel) String() string { return levelName(attachmentNames, int(l)) }

func levelName(names []string, i int) string {
	if i < 0 || i >= len(names) {
		return "invalid"
	}
	return names[i]
}

// Permissions are what a plugin may see and do with a message.
type Permissions struct {
	ReadHeaders     bool
	ReadBody        BodyLevel
	ReadAttachments AttachmentLevel
	WriteTags       bool
	MoveMessage     bool
	WriteMetadata   bool
}

type dependency struct{ perm, need string }

func (p Permissions) missing() []dependency {
	var d []dependency
	if p.WriteTags && !p.ReadHeaders {
		d = append(d, dependency{"write_tags", "read_headers"})
	}
	if p.MoveMessage && !p.ReadHeaders {
		d = append(d, dependency{"move_message", "read_headers"})
	}
	if p.MoveMessage && p.ReadBody < BodyPreview {
		d = append(d, dependency{"move_message", "read_body = preview or full"})
	}
	return d
}

// Missing lists, in words, the permissions p lacks that others depend on,
// e.g. "move_message needs read_body = preview or full".
func (p Permissions) Missing() []string {
	var out []string
	for _, d := range p.missing() {
		out = append(out, d.perm+" needs "+d.need)
	}
	return out
}

// AddMissing grants the least that satisfies the dependencies (read_headers,
// read_body = preview) and returns what it added.
func (p *Permissions) AddMissing() []string {
	var added []string
	if (p.WriteTags || p.MoveMessage) && !p.ReadHeaders {
		p.ReadHeaders = true
		added = append(added, "read_headers")
	}
	if p.MoveMessage && p.ReadBody < BodyPreview {
		p.ReadBody = BodyPreview
		added = append(added, "read_body = preview")
	}
	return added
}

// String summarises p for an administrator, e.g.
// "read_headers, read_body = preview, read_attachments = metadata, write_tags".
func (p Permissions) String() string {
	var s []string
	if p.ReadHeaders {
		s = append(s, "read_headers")
	}
	s = append(s, "read_body = "+p.ReadBody.String(), "read_attachments = "+p.ReadAttachments.String())
	for _, w := range []struct {
		on   bool
		name string
	}{{p.WriteTags, "write_tags"}, {p.MoveMessage, "move_message"}, {p.WriteMetadata, "write_metadata"}} {
		if w.on {
			s = append(s, w.name)
		}
	}
	return strings.Join(s, ", ")
}

func (c *checker) checkPermissions(f filePermissions) Permissions {
	body := c.oneOf("permissions.read_body", f.ReadBody, "none", bodyNames...)
	att := c.oneOf("permissions.read_attachments", f.ReadAttachments, "metadata", attachmentNames...)
	return Permissions{
		ReadHeaders:     f.ReadHeaders,
		ReadBody:        BodyLevel(slices.Index(bodyNames, body)),
		ReadAttachments: AttachmentLevel(slices.Index(attachmentNames, att)),
		WriteTags:       f.WriteTags,
		MoveMessage:     f.MoveMessage,
		WriteMetadata:   f.WriteMetadata,
	}
}
