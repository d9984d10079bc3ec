package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelpValueNamesAreNames runs every command's --help (the whole cobra
// tree, not only tunnel, which is where the bug was seen) and checks every
// flag's value name. pflag takes the first back-quoted word of a usage
// string as the value's name (pflag.UnquoteUsage), so "from `ccproxy tunnel
// keygen`" printed "--cert ccproxy tunnel keygen" as if it were a type; a
// name with a space is always such a quote.
func TestHelpValueNamesAreNames(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walk(root, nil)
	if len(paths) < 10 {
		t.Fatalf("walked only %d commands: %v", len(paths), paths)
	}

	for _, path := range paths {
		name := strings.Join(append([]string{"ccproxy"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			root := newRootCmd()
			root.InitDefaultHelpCmd()
			root.InitDefaultCompletionCmd()
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(append([]string(nil), path...), "--help"))
			if err := root.Execute(); err != nil {
				t.Fatalf("%s --help: %v", name, err)
			}
			help := out.String()
			check := func(f *pflag.Flag) {
				value, _ := pflag.UnquoteUsage(f)
				if strings.ContainsAny(value, " \t") {
					t.Errorf("--%s: value name %q (a back-quoted phrase in its usage %q)", f.Name, value, f.Usage)
					return
				}
				if value != "" && !f.Hidden && !strings.Contains(help, "--"+f.Name+" "+value+" ") {
					t.Errorf("--%s: help does not show it as --%s %s:\n%s", f.Name, f.Name, value, help)
				}
			}
			cmd.LocalFlags().VisitAll(check)
			cmd.InheritedFlags().VisitAll(check)
		})
	}
}
