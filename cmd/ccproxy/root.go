package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ccproxy",
		Short:         "Relay Contrast's attested-TLS port and name what went wrong with every connection",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Subcommands, one file each (cmd/ccproxy/<name>.go).
	root.AddCommand(
		newVersionCmd(),
	)
	return root
}
