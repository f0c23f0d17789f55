package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SettingType is the type of one of a plugin's own settings.
type SettingType string

// Setting types and the Go type of their values.
const (
	SettingString   SettingType = "string"   // string
	SettingInt      SettingType = "int"      // int64
	SettingBool     SettingType = "bool"     // bool
	SettingFloat    SettingType = "float"    // float64
	SettingDuration SettingType = "duration" // time.Duration
)

var settingTypes = []string{"string", "int", "bool", "float", "duration"}

// Setting describes one of a plugin's settings ([settings.NAME]).
type Setting struct {
	Type        SettingType
	Required    bool
	Default     any // nil, or a value of Type's Go type
	Description string
}

// CheckSettings checks the values an administrator gave for m's settings and
// returns them converted to their types, with defaults filled in. Unknown
// names, missing required settings and wrong types are errors (errors.Join
// of *Error naming settings.NAME).
func (m *Manifest) CheckSettings(values map[string]any) (map[string]any, error) {
	out := map[string]any{}
	var errs []error
	fail := func(name, msg string) { errs = append(errs, &Error{Key: "settings." + name, Msg: msg}) }
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if _, ok := m.Settings[name]; !ok {
			msg := "unknown setting"
			if len(m.Settings) == 0 {
				msg += fmt.Sprintf(" (plugin %s has no settings)", m.ID)
			} else {
				msg += fmt.Sprintf(" (plugin %s has %s)", m.ID, strings.Join(slices.Sorted(maps.Keys(m.Settings)), ", "))
			}
			fail(name, msg)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Settings)) {
		s := m.Settings[name]
		switch v, ok := values[name]; {
		case ok && v != nil:
			cv, err := convert(s.Type, v)
			if err != nil {
				fail(name, err.Error())
			}
			out[name] = cv
		case s.Default != nil:
			out[name] = s.Default
		case s.Required:
			fail(name, "required, and has no default")
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

var settingNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func (c *checker) checkSettings(f map[string]fileSetting) map[string]Setting {
	if len(f) == 0 {
		return nil
	}
	out := map[string]Setting{}
	for _, name := range slices.Sorted(maps.Keys(f)) {
		fs, key := f[name], "settings."+name
		if !settingNameRE.MatchString(name) {
			c.fail(key, "a setting name is a lowercase letter then up to 63 of a-z, 0-9 and _")
			continue
		}
		s := Setting{Required: fs.Required, Description: fs.Description}
		if !c.has(key + ".type") {
			c.fail(key+".type", "required (one of %s)", orList(settingTypes))
		}
		s.Type = SettingType(c.oneOf(key+".type", fs.Type, "", settingTypes...))
		if c.has(key+".default") && s.Type != "" {
			v, err := convert(s.Type, fs.Default)
			switch {
			case err != nil:
				c.fail(key+".default", "%v", err)
			case s.Required:
				c.fail(key+".required", "a required setting cannot have a default (remove one of them)")
			default:
				s.Default = v
			}
		}
		out[name] = s
	}
	return out
}

// convert returns v as a value of t's Go type. Text (from a command line)
// is read as the type: "42", "true", "1.5".
func convert(t SettingType, v any) (any, error) {
	if s, ok := v.(string); ok && t != SettingString && t != SettingDuration {
		var err error
		switch t {
		case SettingBool:
			v, err = strconv.ParseBool(s)
		case SettingInt:
			v, err = strconv.ParseInt(s, 10, 64)
		case SettingFloat:
			v, err = strconv.ParseFloat(s, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not %s", s, map[SettingType]string{SettingBool: "true or false", SettingInt: "an integer", SettingFloat: "a number"}[t])
		}
	}
	switch t {
	case SettingString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case SettingBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case SettingInt:
		if n, ok := toInt(v); ok {
			return n, nil
		}
	case SettingFloat:
		if f, ok := toFloat(v); ok {
			return f, nil
		}
	case SettingDuration:
		switch d := v.(type) {
		case time.Duration:
			return d, nil
		case string:
			p, err := time.ParseDuration(d)
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (write e.g. \"30s\" or \"1h\")", d)
			}
			return p, nil
		}
	}
	article := "a "
	if t == SettingInt {
		article = "an "
	}
	return nil, fmt.Errorf("must be %s%s, not %s", article, t, typeName(v))
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint:
		return int64(n), n <= math.MaxInt64
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float32:
		return toInt(float64(n))
	case float64:
		ok := n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64
		return int64(n), ok
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	i, ok := toInt(v)
	return float64(i), ok
}

// typeName names the type of a TOML, JSON or Go value in an error message.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "an integer"
	case float32, float64:
		return "a number with a fraction"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date and time"
	}
	if strings.HasPrefix(fmt.Sprintf("%T", v), "toml.Local") {
		return "a date or time"
	}
	return fmt.Sprintf("a %T", v)
}
