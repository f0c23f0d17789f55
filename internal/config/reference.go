package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// leaf is one key of the file with its default value.
type leaf struct {
	key   string // dotted, e.g. smtp.listen
	field reflect.StructField
	def   reflect.Value
}

// defaultLeaves lists every key in struct order, with the value Default gives it.
func defaultLeaves() []leaf {
	var ls []leaf
	def := Default()
	walkFields(reflect.ValueOf(&def).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		ls = append(ls, leaf{key, f, v})
	})
	return ls
}

// section is the top-level group a key belongs to: "" for top-level
// keys, the key itself for a top-level list.
func (l leaf) section() string {
	if i := strings.IndexByte(l.key, '.'); i >= 0 {
		return l.key[:i]
	}
	if l.field.Type.Kind() == reflect.Slice {
		return l.key
	}
	return ""
}

// live reports whether mairust reload applies the key without a restart.
func (l leaf) live() bool { return l.field.Tag.Get("reload") == "live" }

// Reference returns the Markdown reference of mairust.yaml, the content of
// docs/configuration.md: one table per section with each key's type,
// default, reload behaviour, environment variable and description.
func Reference() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from internal/config by ` + "`mairust config reference`" + `; do not edit. -->

MaiRust reads its settings from one YAML file, mairust.yaml. Every key is
optional: a key the file leaves out takes the default listed below, and an
empty file runs with the defaults. Unknown keys, keys given twice and values
of the wrong type are errors naming the key and its line.

- ` + "`mairust config check --config FILE`" + ` loads and validates a file without
  starting anything.
- ` + "`mairust config example`" + ` prints a commented mairust.yaml with every key at
  its default.

Durations are written like 30s, 5m or 1h30m.

## Environment overrides

A key with an environment variable in the table takes the value of that
variable when it is set and not empty, over the value in the file. Use them
to keep secrets out of the file.

## Reload

` + "`mairust reload`" + ` re-reads the file. Keys marked *live* are applied at once;
a change to a key marked *restart* is reported and takes effect at the next
restart, the running process keeping the old value until then.
`)
	current := "-"
	for _, l := range defaultLeaves() {
		if s := l.section(); s != current {
			current = s
			title := "`" + s + "`"
			if s == "" {
				title = "Top level"
			}
			fmt.Fprintf(&b, "\n## %s\n\n", title)
			b.WriteString("| Key | Type | Default | Reload | Environment | Description |\n")
			b.WriteString("|---|---|---|---|---|---|\n")
		}
		def := "*(empty)*"
		if s := formatValue(l.def); s != "" {
			def = "`" + s + "`"
		}
		reload := "restart"
		if l.live() {
			reload = "live"
		}
		env := ""
		if e := l.field.Tag.Get("env"); e != "" {
			env = "`" + e + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n",
			l.key, kindName(l.field.Type), def, reload, env, strings.ReplaceAll(l.field.Tag.Get("doc"), "|", `\|`))
	}
	return b.String()
}

// Example returns a commented mairust.yaml setting every key to its default.
func Example() string {
	var b strings.Builder
	b.WriteString("# mairust.yaml: every key at its default (printed by `mairust config example`).\n")
	b.WriteString("# Any key may be left out; docs/configuration.md describes them all.\n")
	var open []string // the mappings the previous key was in
	for _, l := range defaultLeaves() {
		parts := strings.Split(l.key, ".")
		parents := parts[:len(parts)-1]
		same := 0
		for same < len(open) && same < len(parents) && open[same] == parents[same] {
			same++
		}
		b.WriteString("\n")
		for i := same; i < len(parents); i++ {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), parents[i])
		}
		open = parents
		indent := strings.Repeat("  ", len(parents))
		comment := l.field.Tag.Get("doc")
		if l.live() {
			comment += " Applied live by mairust reload."
		}
		if e := l.field.Tag.Get("env"); e != "" {
			comment += " Overridden by the environment variable " + e + "."
		}
		for _, line := range wrap(comment, 76-len(indent)) {
			fmt.Fprintf(&b, "%s# %s\n", indent, line)
		}
		if l.def.Kind() == reflect.Slice && l.def.Type().Elem().Kind() == reflect.Struct && l.def.Len() > 0 {
			// In block style: a flow list of mappings is too wide.
			fmt.Fprintf(&b, "%s%s:\n", indent, parts[len(parts)-1])
			for i := 0; i < l.def.Len(); i++ {
				for j, f := range formatFields(l.def.Index(i)) {
					dash := "  "
					if j == 0 {
						dash = "- "
					}
					fmt.Fprintf(&b, "%s  %s%s\n", indent, dash, f)
				}
			}
			continue
		}
		v := formatValue(l.def)
		if l.def.Kind() == reflect.String {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s%s: %s\n", indent, parts[len(parts)-1], v)
	}
	return b.String()
}

// kindName is the type of a key as the reference shows it.
func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Pointer:
		return kindName(t.Elem())
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "list of mappings"
	case t.Kind() == reflect.Slice:
		return "list of " + kindName(t.Elem())
	default:
		return t.Kind().String()
	}
}

// formatValue renders a value the way it is written in the file.
func formatValue(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		s := d.String() // e.g. 1h0m0s
		if strings.HasSuffix(s, "m0s") {
			s = s[:len(s)-2]
		}
		if strings.HasSuffix(s, "h0m") {
			s = s[:len(s)-2]
		}
		return s
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		return "[" + strings.Join(v.Interface().([]string), ", ") + "]"
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		items := make([]string, v.Len())
		for i := range items {
			items[i] = formatMapping(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// formatMapping renders a struct as a YAML flow mapping of its fields that
// are not zero.
func formatMapping(v reflect.Value) string {
	return "{" + strings.Join(formatFields(v), ", ") + "}"
}

// formatFields renders the fields of a struct that are not zero, as
// key: value each.
func formatFields(v reflect.Value) []string {
	var fields []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		val := formatValue(f)
		if f.Kind() == reflect.String {
			val = strconv.Quote(val)
		}
		fields = append(fields, yamlName(v.Type().Field(i))+": "+val)
	}
	return fields
}

// wrap splits text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
