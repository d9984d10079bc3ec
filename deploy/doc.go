// Package deploy holds ccproxy's in-cluster deployment: socat-replacement.yaml
// replaces Contrast's socat port-forwarder for the Coordinator with ccproxy,
// as the same bare Pod (name and label port-forwarder-coordinator, container
// port-forwarder, 50Mi, LISTEN_PORTS and FORWARD_HOST), so Contrast's
// `kubectl port-forward pod/port-forwarder-coordinator 1313` works
// unchanged; socat-replacement-deployment.yaml runs the same container under
// a Deployment named ccproxy-coordinator; and deploy/image builds the
// container image they run, offline. The manifests are embedded so a
// command can print them:
//
//	os.Stdout.Write(deploy.SocatReplacement)
//
// deploy_test.go decodes every object strictly into the Kubernetes API types
// and checks the settings the deployment depends on; README.md says how to
// build, push, pin, apply and use it.
package deploy

import _ "embed"

// SocatReplacement is deploy/socat-replacement.yaml as built: a ConfigMap,
// a Service and a Pod, all named port-forwarder-coordinator (the ConfigMap
// with a -config suffix).
//
//go:embed socat-replacement.yaml
var SocatReplacement []byte

// SocatReplacementDeployment is deploy/socat-replacement-deployment.yaml as
// built: the same ConfigMap, Service and pod spec under the name
// ccproxy-coordinator, with a Deployment in place of the bare Pod.
//
//go:embed socat-replacement-deployment.yaml
var SocatReplacementDeployment []byte
