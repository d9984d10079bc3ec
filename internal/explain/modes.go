package explain

import (
	"fmt"
	regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// modeText is what each contract failure mode means and what to do about it,
// for text that names a mode rather than showing an error: ccproxy's own
// logs and traces (ccproxy.failure_mode=...), `ccproxy analyze` output, or
// just the mode's name.
var modeText = map[failure.Mode]struct {
	meaning string
	steps   []string
}{
	failure.OK: {"The handshake finished and application data flowed both ways.", []string{"Nothing to do for this connection."}},
	failure.ClientAborted: {"The client closed the connection before it had sent a complete ClientHello, or sent none within ccproxy's ClientHello timeout (`--client-hello-timeout`; ccproxy then reset it): a port scan, a health check, or a client that gave up at once or connected and waited.",
		[]string{"Readiness probes and load balancer health checks look like this; compare the client address with your probes (`kubectl get nodes -o wide`)."}},
	failure.ClientNotTLS: {"The client's first bytes were not a TLS handshake record: something speaks plain text (HTTP, a probe) to the attested port.",
		[]string{"Point plain-text clients at the Coordinator's HTTP port 1314, not 1313."}},
	failure.UpstreamDNSFailure: {"The upstream's name did not resolve.",
		[]string{"Check the name: `getent hosts <name>`; in-cluster service names resolve only inside the cluster."}},
	failure.UpstreamRefused: {"The upstream host answered but nothing listens on the port: the Coordinator is not running or ready, or the port is wrong.",
		[]string{"`kubectl get pods -l app.kubernetes.io/name=coordinator` (READY 1/1) and `kubectl get svc coordinator`."}},
	failure.UpstreamDialTimeout: {"No TCP answer from the upstream in time: packets are dropped by a firewall, a wrong address, or a load balancer without healthy backends.",
		[]string{"`nc -vz -w 5 <host> <port>` from the same machine; check firewall rules for port 1313."}},
	failure.UpstreamUnreachable: {"The dial failed at once because the network has no route to the upstream (EHOSTUNREACH, ENETUNREACH): a wrong address, a node or load balancer address that no longer exists, a missing route or VPN, or a network policy or firewall that rejects the connection.",
		[]string{"Check the address: `kubectl get svc coordinator -o wide` (and `kubectl get nodes -o wide` for a NodePort).", "Check the route from this machine: `ip route get <host>`; check NetworkPolicies in the Coordinator's namespace: `kubectl get networkpolicy -A`."}},
	failure.LBClosedEarly: {"The upstream (a load balancer or forwarder) closed or reset the connection after the ClientHello, before any byte from the Coordinator; the Coordinator itself always answers.",
		[]string{"Check the load balancer or forwarder in front of the Coordinator and its backends: `kubectl get endpoints coordinator`."}},
	failure.IssuerTimeout: {"After the ClientHello the upstream stayed silent beyond the issuer deadline: the Coordinator could not produce its attestation evidence in time (or the client gave up first).",
		[]string{"Read the Coordinator's log for issuer and collateral errors: `kubectl logs -l app.kubernetes.io/name=coordinator`."}},
	failure.IssuerError: {"The Coordinator answered the ClientHello with an internal_error alert: it could not issue an attestation document. A CLI newer than the Coordinator causes the same alert (coordinator_version_mismatch).",
		[]string{"`ccproxy probe --coordinator <coordinator>:1313 --nonce-in sni` tells the two apart; then read the Coordinator's log."}},
	failure.UpstreamNotTLS: {"The upstream answered with bytes that are not TLS: the address reaches another service or port than the attested 1313.",
		[]string{"Check that the upstream is the Coordinator's port 1313."}},
	failure.UnexpectedCertificate: {"The server's certificate has no attestation-document extension: wrong port, wrong service, a TLS-terminating hop, or another Contrast version.",
		[]string{"Make sure every hop forwards TCP without terminating TLS, and that the address is the Coordinator's 1313."}},
	failure.NoMatchingValidator: {"The evidence is for another platform than the reference values cover.",
		[]string{"`jq '.ReferenceValues | keys' manifest.json` and regenerate for the cluster's platform."}},
	failure.EvidenceInvalid: {"The evidence's signature or certificate chain does not verify.",
		[]string{"`ccproxy attest` on the Coordinator's certificate names the failing step."}},
	failure.ReportDataMismatch: {"The evidence is not bound to this handshake's nonce and key: replayed, or TLS was terminated in between.",
		[]string{"Make sure nothing between client and Coordinator terminates TLS."}},
	failure.PolicyHashMismatch: {"The Coordinator's policy hash (SNP HOST_DATA / TDX MR_CONFIG_ID) differs from the expected one: Coordinator and CLI/manifest come from different releases or YAML.",
		[]string{"Compare `contrast --version` with the Coordinator's image and the manifest's coordinator policy hash."}},
	failure.MeasurementMismatch: {"The launch measurement (MEASUREMENT / MRTD / RTMRs) differs from the reference values: the node runs another runtime release or VM configuration.",
		[]string{"Compare the runtime class of the Coordinator with the `runtime handler` in `contrast --version`."}},
	failure.TCBMismatch: {"The platform's TCB / SVNs (or SNP mitigation vector) are below the minimum in the reference values.",
		[]string{"Update the host's firmware, or review and adjust the minimum in manifest.json."}},
	failure.ReferenceValueMismatch: {"The evidence verified, but a checked claim other than the launch measurement, TCB or policy hash differs from the manifest's reference values: SNP ID-key digest or a missing ID block, chip ID, guest policy, VMPL or platform info; TDX PIID, XFAM, TD attributes, MRSEAM, MR_OWNER or the minimum TCB evaluation data number. The detail names the field with the observed and expected values.",
		[]string{"Compare the manifest's reference values for the platform (`jq .ReferenceValues manifest.json`) with what the platform reports (`ccproxy probe --coordinator <coordinator>:1313 --manifest manifest.json` prints the evidence's fields).", "Regenerate the reference values for the platform and runtime the cluster really uses: `contrast generate --reference-values <platform> ...` with the CLI of the deployed release, then set the manifest again.", "For a chip ID or PIID: check the AllowedChipIDs / AllowedPIIDs lists against the node the Coordinator runs on (`kubectl get pods -l app.kubernetes.io/name=coordinator -o wide`)."}},
	failure.ClientRejectedCertificate: {"The client aborted after receiving the server's certificate; ccproxy could not learn a more exact reason.",
		[]string{"Paste the client's own error into `ccproxy explain`, or run `ccproxy probe --coordinator <coordinator>:1313 --manifest manifest.json`."}},
	failure.UnsupportedATLSVersion: {"The client's `atls:` ALPN entry names a version the Coordinator does not speak: different releases.",
		[]string{"Use a CLI of the Coordinator's release."}},
	failure.ClockSkew: {"The Coordinator's certificate is not valid at the client's time: the clocks differ by more than the certificate's 2-hour margin.",
		[]string{"Compare `date -u` on the client machine and on the Coordinator's node; check NTP."}},
	failure.CoordinatorVersionMismatch: {"The client sends its nonce only in the ALPN entry (newer CLI) but the Coordinator reads it only from the SNI (older Coordinator), so every such handshake fails.",
		[]string{"Use the CLI release that matches the Coordinator, or upgrade the Coordinator."}},
	failure.TLSAlert: {"A TLS alert other than internal_error ended the handshake; tls.alert.description says which.",
		[]string{"Look at the alert number in the trace (`tls.alert.description`)."}},
	failure.UpstreamReset: {"The upstream reset or closed the connection after a finished handshake while the client was still sending.",
		[]string{"Check the Coordinator's log and restarts (`kubectl get pods -l app.kubernetes.io/name=coordinator`), and idle timeouts of the load balancer."}},
	failure.CoordinatorRecoveryMode: {"The Coordinator restarted and waits for `contrast recover`.",
		[]string{"`contrast recover -c <coordinator>:1313` with the seed and seed-share owner key."}},
	failure.CoordinatorNoManifest: {"The Coordinator has no manifest yet.",
		[]string{"`contrast set -c <coordinator>:1313 resources/`."}},
	failure.ManifestMismatch: {"The Coordinator's active manifest differs from the local manifest.json.",
		[]string{"`contrast verify` writes the Coordinator's manifests to verify/; diff them with the local file."}},
	failure.CoordinatorAPIError: {"The handshake succeeded and the Coordinator is genuine, but its user API answered with an error that is none of the known states (no manifest, recovery mode, manifest mismatch); the detail carries the gRPC code and message (Unimplemented: CLI and Coordinator from different releases; PermissionDenied: the caller's key is not accepted).",
		[]string{"Read the gRPC code and message in the detail; for Unimplemented compare `contrast --version` with the Coordinator's image.", "Read the Coordinator's log around the time of the call: `kubectl logs -l app.kubernetes.io/name=coordinator --tail=200`."}},
	failure.TunnelUnavailable: {"The local tunnel end (`ccproxy tunnel connect`) could not carry the connection to the in-cluster end (`ccproxy tunnel serve`): the tunnel is down or was never established, the peer's certificate pin was refused, the server is at its stream limit, or the server's verdict on the connection never came. The detail says which; the Coordinator was never reached through the tunnel.",
		[]string{"Check that the in-cluster end runs and is reachable: the pod of `ccproxy tunnel serve` is ready, its log shows no errors, and its `--quic-listen` UDP port is open on the way (`--server HOST:PORT` of `tunnel connect`).", "Compare the pins: `ccproxy tunnel fingerprint <cert>` of each end's certificate must equal the `--peer-fingerprint` the other end was given.", "If the server is at its stream limit, wait for open connections to finish or raise `--max-streams` on `tunnel serve`."}},
	failure.RelayResourceExhausted: {"ccproxy itself ran out of a resource when it dialed the upstream: open files (EMFILE for the process, ENFILE for the host), socket buffers or kernel memory (ENOBUFS, ENOMEM), or local ports (EADDRNOTAVAIL). Nothing is known about the upstream; the client got a reset at once.",
		[]string{"Compare ccproxy's open descriptors (`ls /proc/<pid>/fd | wc -l`) with its limit (`grep 'open files' /proc/<pid>/limits`): each relayed connection holds two.", "Lower `--max-connections` below half the open-file limit, or raise the limit (`ulimit -n`, the container runtime's nofile setting).", "For EADDRNOTAVAIL, many connections to one upstream used up the local port range: `sysctl net.ipv4.ip_local_port_range`."}},
	failure.ManifestInvalid: {"The local manifest.json is one the Contrast CLI refuses before it dials: its own manifest validation (guest-policy flags that may not be changed, known product names, reference values that must be filled in, the Coordinator policy count its release requires) failed. No connection was made; the detail quotes the CLI's reason.",
		[]string{"Fix the named field in manifest.json, or regenerate it with `contrast generate` of the CLI release you run.", "`ccproxy attest --manifest manifest.json` refuses the same manifest with the same words (exit 2)."}},
}

// modeNameRe finds a failure mode named in ccproxy's own output: log
// attributes, span attributes in JSON, or `analyze` tables.
var modeNameRe = near(regexp.MustCompile(`failure_mode"?\s*(?:[:=]|,\s*"value"\s*:\s*\{\s*"stringValue"\s*:)\s*"?([a-z_]+)`), "failure_mode", 10, 80)

func ruleModeName(s *scanner) {
	emit := func(start, end int, mode failure.Mode) {
		t, ok := modeText[mode]
		if !ok {
			return
		}
		s.claim(start, end)
		steps := append([]string(nil), t.steps...)
		for i := range steps {
			steps[i] = strings.ReplaceAll(steps[i], "<coordinator>:1313", s.addrOrPlaceholder())
		}
		s.add(start, end, Finding{
			Mode:      string(mode),
			Summary:   fmt.Sprintf("ccproxy named this connection %s", mode),
			Meaning:   t.meaning,
			NextSteps: steps,
		})
	}
	// The whole text is a mode's name: `ccproxy explain lb_closed_early`.
	if m := failure.Mode(strings.TrimSpace(s.text)); m.Known() {
		emit(0, len(s.text), m)
		return
	}
	s.each(modeNameRe, func(m []int) {
		emit(m[0], m[1], failure.Mode(s.group(m, 1)))
	})
}
