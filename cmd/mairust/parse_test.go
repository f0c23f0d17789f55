package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseTakesFlagsAroundPositionals(t *testing.T) {
	tests := []struct {
		args       []string
		dir        string
		positional []string
	}{
		{[]string{"a@b.test", "--data-dir", "/d"}, "/d", []string{"a@b.test"}},
		{[]string{"--data-dir", "/d", "a@b.test"}, "/d", []string{"a@b.test"}},
		{[]string{"x", "--data-dir=/d", "y"}, "/d", []string{"x", "y"}},
		{[]string{"--", "-x", "--data-dir", "/d"}, "", []string{"-x", "--data-dir", "/d"}},
		{[]string{"x", "--", "--data-dir"}, "", []string{"x", "--data-dir"}},
		{nil, "", nil},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		dir := fs.String("data-dir", "", "")
		if err := parse(fs, tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if *dir != tc.dir || !slices.Equal(fs.Args(), tc.positional) {
			t.Errorf("%q: dir %q args %q, want %q %q", tc.args, *dir, fs.Args(), tc.dir, tc.positional)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parse(fs, []string{"x", "--unknown"}); err != errUsage {
		t.Errorf("unknown flag after a positional: %v, want errUsage", err)
	}
}
