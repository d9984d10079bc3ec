// Package deploy holds ccproxy's in-cluster deployment: socat-replacement.yaml
// replaces Contrast's socat port-forwarder pod for the Coordinator with
// ccproxy (same names, labels, ports and environment variables), and
// deploy/image builds the container image it runs, offline. The manifest is
// embedded so a command can print it:
//
//	os.Stdout.Write(deploy.SocatReplacement)
//
// deploy_test.go decodes every object strictly into the Kubernetes API types
// and checks the settings the deployment depends on; README.md says how to
// build, push, pin, apply and use it.
package deploy

import _ "embed"

// SocatReplacement is deploy/socat-replacement.yaml as built: a ConfigMap,
// a Service and a Deployment named port-forwarder-coordinator.
//
//go:embed socat-replacement.yaml
var SocatReplacement []byte
