package main

import "github.com/ccproxy-dev/ccproxy/demo"

// demoProber is how the demo asks a Coordinator for its state: the probe
// command's code path.
func demoProber() demo.Prober { return nil }
