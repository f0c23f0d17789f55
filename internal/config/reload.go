package config

import (
	"fmt"
	"reflect"
)

// Changes lists the keys that differ between two configurations, split into
// those applied live and those that need a restart.
type Changes struct {
	Live    []string `json:"applied"`
	Restart []string `json:"restart_required"`
}

// leaves maps each dotted key of c to its field.
func leaves(c *Config) map[string]reflect.Value {
	m := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(c).Elem(), "", func(key string, _ reflect.StructField, v reflect.Value) { m[key] = v })
	return m
}

// Diff compares old and new key by key.
func Diff(old, new Config) Changes {
	var ch Changes
	newLeaves := leaves(&new)
	walkFields(reflect.ValueOf(&old).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		if reflect.DeepEqual(v.Interface(), newLeaves[key].Interface()) {
			return
		}
		if f.Tag.Get("reload") == "live" {
			ch.Live = append(ch.Live, key)
		} else {
			ch.Restart = append(ch.Restart, key)
		}
	})
	return ch
}

// Merge returns running with the live keys taken from next; keys that need a
// restart keep their running values. The changes are reported either way.
func Merge(running, next Config) (Config, Changes) {
	merged := running
	nextLeaves := leaves(&next)
	walkFields(reflect.ValueOf(&merged).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		if f.Tag.Get("reload") == "live" {
			v.Set(nextLeaves[key])
		}
	})
	return merged, Diff(running, next)
}

// String tells an operator what happened.
func (c Changes) String() string {
	switch {
	case len(c.Live) == 0 && len(c.Restart) == 0:
		return "no changes"
	case len(c.Restart) == 0:
		return fmt.Sprintf("applied %v", c.Live)
	default:
		return fmt.Sprintf("applied %v; restart needed for %v (still running with the old values)", c.Live, c.Restart)
	}
}
