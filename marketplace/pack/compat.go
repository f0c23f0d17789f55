package pack

import (
	"fmt"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// UpgradeGuide is where administrators learn how to upgrade MaiRust.
const UpgradeGuide = "docs/upgrade.md"

// IncompatibleError says a plugin needs a newer MaiRust.
type IncompatibleError struct {
	Required, Running manifest.Version
}

func (e *IncompatibleError) Error() string { return e.Message("en") }

// Message is the error in a language: "ja" for Japanese, else English.
func (e *IncompatibleError) Message(lang string) string {
	if lang == "ja" {
		return fmt.Sprintf("このプラグインは MaiRust %s 以降でのみ動作します（現在: %s）", e.Required, e.Running)
	}
	return fmt.Sprintf("This plugin requires MaiRust %s or later (current: %s). See %s.", e.Required, e.Running, UpgradeGuide)
}

// CheckCompatible returns an *IncompatibleError when running is older than
// the package's min_mairust_version.
func CheckCompatible(m Manifest, running manifest.Version) error {
	if m.MinMairustVersion == "" {
		return nil
	}
	need, err := manifest.ParseVersion(m.MinMairustVersion)
	if err != nil {
		return fmt.Errorf("%s: min_mairust_version: %w", ManifestName, err)
	}
	if running.Compare(need) < 0 {
		return &IncompatibleError{Required: need, Running: running}
	}
	return nil
}

// DescribePermissions says in words what a plugin may see and do.
func DescribePermissions(p manifest.Permissions) []string {
	var out []string
	if p.ReadHeaders {
		out = append(out, "read the headers of messages (read_headers)")
	}
	switch p.ReadBody {
	case manifest.BodyPreview:
		out = append(out, "read the start of message bodies (read_body = preview)")
	case manifest.BodyFull:
		out = append(out, "read whole message bodies (read_body = full)")
	}
	switch p.ReadAttachments {
	case manifest.AttachmentsMetadata:
		out = append(out, "see the names, sizes and types of attachments (read_attachments = metadata)")
	case manifest.AttachmentsPreview:
		out = append(out, "read small attachments and the start of text ones (read_attachments = preview)")
	case manifest.AttachmentsFull:
		out = append(out, "read whole attachments (read_attachments = full)")
	}
	if p.WriteTags {
		out = append(out, "tag messages (write_tags)")
	}
	if p.MoveMessage {
		out = append(out, "move messages to other folders (move_message)")
	}
	if p.WriteMetadata {
		out = append(out, "attach metadata to messages (write_metadata)")
	}
	if len(out) == 0 {
		out = append(out, "nothing of the messages")
	}
	return out
}
