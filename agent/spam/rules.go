package spam

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultRules is the rule set used when no rules file is configured; it
// also documents the file format.
//
//go:embed default_rules.yaml
var DefaultRules []byte

// maxRulesBytes bounds a rules file.
const maxRulesBytes = 1 << 20

// Rules is a parsed rule set.
type Rules struct {
	thresholds []threshold // in decreasing severity
	subject    string      // template of the rewritten Subject, %s the original
	rules      []rule
}

type threshold struct {
	action Action
	score  float64
}

// rule is one named check.
type rule struct {
	name    string
	score   float64
	action  Action // forced when the rule matches; "" for none
	message string
	match   func(m *message) bool
}

// message is what the rules look at.
type message struct {
	env    Envelope
	data   []byte
	fields []field
	body   []byte
}

// LoadRules reads the rules file at path; "" gives DefaultRules.
func LoadRules(path string) (*Rules, error) {
	if path == "" {
		return ParseRules(DefaultRules, "(default rules)")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spam rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRulesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("spam rules: %w", err)
	}
	if len(data) > maxRulesBytes {
		return nil, fmt.Errorf("spam rules: %s is larger than %d bytes", path, maxRulesBytes)
	}
	return ParseRules(data, path)
}

// fileKeys and ruleKeys are the keys a rules file may use.
var (
	fileKeys = []string{"actions", "subject", "rules"}
	ruleKeys = []string{"name", "description", "score", "action", "message",
		"header", "regex", "body", "missing_header", "senders", "recipients", "size_over"}
	ruleName = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
)

// ruleSpec is one rule as written in the file.
type ruleSpec struct {
	Name          string   `yaml:"name"`
	Description   string   `yaml:"description"`
	Score         float64  `yaml:"score"`
	Action        string   `yaml:"action"`
	Message       string   `yaml:"message"`
	Header        string   `yaml:"header"`
	Regex         string   `yaml:"regex"`
	Body          string   `yaml:"body"`
	MissingHeader string   `yaml:"missing_header"`
	Senders       []string `yaml:"senders"`
	Recipients    []string `yaml:"recipients"`
	SizeOver      int64    `yaml:"size_over"`
}

// ParseRules parses a rules file; name is used in errors, which give the
// line of the problem.
func ParseRules(data []byte, name string) (*Rules, error) {
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	rs := &Rules{subject: "***SPAM*** %s"}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty; write `rules: []` to turn the rules off", name)
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fail(doc.Line, "must be a mapping with actions, subject and rules")
	}
	if err := checkKeys(doc, fileKeys, fail); err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		var err error
		switch k.Value {
		case "actions":
			rs.thresholds, err = parseThresholds(v, fail)
		case "subject":
			if v.Kind != yaml.ScalarNode || strings.Count(v.Value, "%s") != 1 || strings.Count(v.Value, "%") != 1 {
				err = fail(v.Line, "subject: must be a text with one %%s (the original subject)")
			}
			rs.subject = v.Value
		case "rules":
			if v.Kind != yaml.SequenceNode {
				if v.Tag != "!!null" {
					err = fail(v.Line, "rules: must be a list")
				}
				break
			}
			for _, n := range v.Content {
				var r rule
				if r, err = parseRule(n, fail); err != nil {
					break
				}
				if slices.ContainsFunc(rs.rules, func(o rule) bool { return o.name == r.name }) {
					err = fail(n.Line, "rule %s: name used twice", r.name)
					break
				}
				rs.rules = append(rs.rules, r)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// checkKeys refuses keys of the mapping n that are not in known.
func checkKeys(n *yaml.Node, known []string, fail func(int, string, ...any) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fail(k.Line, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return fail(k.Line, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
	}
	return nil
}

func parseThresholds(n *yaml.Node, fail func(int, string, ...any) error) ([]threshold, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fail(n.Line, "actions: must be a mapping of action to score")
	}
	var ts []threshold
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		a, ok := parseAction(k.Value)
		if !ok || a == NoAction || slices.ContainsFunc(ts, func(t threshold) bool { return t.action == a }) {
			return nil, fail(k.Line, "actions: %q is not greylist, add_header, rewrite_subject, soft_reject or reject, or is given twice", k.Value)
		}
		var score float64
		if err := v.Decode(&score); err != nil {
			return nil, fail(v.Line, "actions: %s: %q is not a number", k.Value, v.Value)
		}
		ts = append(ts, threshold{a, score})
	}
	slices.SortFunc(ts, func(a, b threshold) int { return b.action.severity() - a.action.severity() })
	return ts, nil
}

// parseRule checks one rule and builds its condition.
func parseRule(n *yaml.Node, fail func(int, string, ...any) error) (rule, error) {
	if n.Kind != yaml.MappingNode {
		return rule{}, fail(n.Line, "a rule must be a mapping (name, a condition, score or action)")
	}
	if err := checkKeys(n, ruleKeys, fail); err != nil {
		return rule{}, err
	}
	var s ruleSpec
	if err := n.Decode(&s); err != nil {
		return rule{}, fail(n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if !ruleName.MatchString(s.Name) {
		return rule{}, fail(n.Line, "rule name %q: must be 1-64 letters, digits or underscores", s.Name)
	}
	r := rule{name: s.Name, score: s.Score, message: headerText(s.Message)}
	bad := func(format string, args ...any) (rule, error) {
		return rule{}, fail(n.Line, "rule %s: %s", s.Name, fmt.Sprintf(format, args...))
	}
	if s.Action != "" {
		a, ok := parseAction(s.Action)
		if !ok {
			return bad("action %q is not no_action, greylist, add_header, rewrite_subject, soft_reject or reject", s.Action)
		}
		r.action = a
	}
	if s.Score == 0 && r.action == "" {
		return bad("needs a score, an action or both")
	}
	conditions := 0
	for _, set := range []bool{s.Header != "", s.Body != "", s.MissingHeader != "", s.Senders != nil, s.Recipients != nil, s.SizeOver != 0} {
		if set {
			conditions++
		}
	}
	if conditions != 1 {
		return bad("needs exactly one condition: header (with regex), body, missing_header, senders, recipients or size_over")
	}
	if (s.Header != "") != (s.Regex != "") {
		return bad("header and regex go together")
	}
	switch {
	case s.Header != "":
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return bad("regex: %v", err)
		}
		r.match = func(m *message) bool {
			for _, f := range m.fields {
				if strings.EqualFold(f.name, s.Header) && re.MatchString(f.value(m.data)) {
					return true
				}
			}
			return false
		}
	case s.Body != "":
		re, err := regexp.Compile(s.Body)
		if err != nil {
			return bad("body: %v", err)
		}
		r.match = func(m *message) bool { return re.Match(m.body) }
	case s.MissingHeader != "":
		r.match = func(m *message) bool {
			return !slices.ContainsFunc(m.fields, func(f field) bool { return strings.EqualFold(f.name, s.MissingHeader) })
		}
	case s.Senders != nil:
		list, err := addressList(s.Senders)
		if err != nil {
			return bad("senders: %v", err)
		}
		r.match = func(m *message) bool { return list.has(m.env.MailFrom) }
	case s.Recipients != nil:
		list, err := addressList(s.Recipients)
		if err != nil {
			return bad("recipients: %v", err)
		}
		r.match = func(m *message) bool { return slices.ContainsFunc(m.env.Rcpts, list.has) }
	default:
		if s.SizeOver < 0 {
			return bad("size_over: must be a positive number of bytes")
		}
		r.match = func(m *message) bool { return int64(len(m.data)) > s.SizeOver }
	}
	return r, nil
}

// addresses is a list of addresses and @domains, lower case.
type addresses []string

func addressList(entries []string) (addresses, error) {
	if len(entries) == 0 {
		return nil, errors.New("the list is empty")
	}
	list := make(addresses, len(entries))
	for i, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		at := strings.IndexByte(e, '@')
		if at < 0 || at == len(e)-1 || strings.ContainsAny(e, " \t<>") || strings.Count(e, "@") != 1 {
			return nil, fmt.Errorf("%q is neither user@domain nor @domain", entries[i])
		}
		list[i] = e
	}
	return list, nil
}

// has reports whether addr is in the list, itself or by its domain.
func (l addresses) has(addr string) bool {
	addr = strings.ToLower(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	return slices.Contains(l, addr) || slices.Contains(l, addr[at:])
}

// Check runs the rules on msg.
func (rs *Rules) Check(env Envelope, msg []byte) Verdict {
	m := &message{env: env, data: msg}
	var bodyStart int
	m.fields, bodyStart = headerFields(msg)
	m.body = msg[bodyStart:]
	v := Verdict{Action: NoAction, Symbols: map[string]float64{}, Scanned: true}
	forced := rule{action: NoAction}
	for _, r := range rs.rules {
		if !r.match(m) {
			continue
		}
		v.Score += r.score
		v.Symbols[r.name] = r.score
		if r.action.severity() > forced.action.severity() {
			forced = r
		}
	}
	v.Action, v.Message = forced.action, forced.message
	for _, t := range rs.thresholds {
		if v.Score >= t.score {
			if t.action.severity() > v.Action.severity() {
				v.Action, v.Message = t.action, ""
			}
			break
		}
	}
	if v.Action == RewriteSubject {
		subject := ""
		for _, f := range m.fields {
			if strings.EqualFold(f.name, "Subject") {
				subject = f.value(msg)
				break
			}
		}
		v.Subject = strings.Replace(rs.subject, "%s", subject, 1)
	}
	return v
}
