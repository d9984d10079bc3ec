package explain

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// grpcWrap wraps a handshake cause the way the Contrast CLI prints it.
func grpcWrap(cause string) string {
	return `Error: getting manifests: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: ` + cause + `"`
}

// slogWrap wraps a message as a slog text handler logs it (quotes escaped).
func slogWrap(msg string) string {
	return `time=2025-06-01T12:00:00.000Z level=ERROR msg="` + strings.ReplaceAll(msg, `"`, `\"`) + `"`
}

// jsonLog wraps a message as a JSON log line (quotes escaped, < > as \u003c).
func jsonLog(msg string) string {
	b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg})
	return string(b)
}

// wrapAt breaks s into lines of n bytes, like a terminal or mail client.
func wrapAt(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString("\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func colour(s string) string { return "\x1b[31;1m" + s + "\x1b[0m" }

func decisionBlob(t *testing.T, d map[string]any) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func hexOf(b byte, n int) string { return strings.Repeat(fmt.Sprintf("%02x", b), n) }

func decList(vals ...int) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (from + i) % 256
	}
	return out
}

type want struct {
	mode   string
	values map[string]string // subset that must match exactly
	alts   []string
}

func TestExplain(t *testing.T) {
	nonce := "5d41402abc4b2a76b9719d911017c592" + "7e240b8a1c7f06a1d0f3b9c4e2a85f61"
	tdxGot := append(seq(200, 32), make([]int, 16)...)
	tdxWant := append(seq(7, 32), make([]int, 16)...)
	hexGot, hexWant := hexOf(0xab, 32), hexOf(0x3c, 32)

	tests := []struct {
		name string
		text string
		want []want
	}{
		{
			name: "EOF, coloured and wrapped inside a word",
			text: colour(wrapAt(grpcWrap("EOF"), 57)),
			want: []want{{mode: string(failure.LBClosedEarly), values: map[string]string{"grpc_code": "Unavailable"}}},
		},
		{
			name: "EOF with the CLI command line gives the address",
			text: "$ contrast verify -c 10.20.30.40:31313\n" + grpcWrap("EOF"),
			want: []want{{mode: string(failure.LBClosedEarly), values: map[string]string{"coordinator": "10.20.30.40:31313"}}},
		},
		{
			name: "connection reset after the ClientHello",
			text: grpcWrap("read tcp 192.168.1.5:50122->172.16.0.9:1313: read: connection reset by peer"),
			want: []want{{mode: string(failure.LBClosedEarly), values: map[string]string{"address": "172.16.0.9:1313"}}},
		},
		{
			name: "LB policy deadline, line break between words",
			text: "rpc error: code = DeadlineExceeded desc = received context error while waiting for new LB policy update:\ncontext deadline exceeded",
			want: []want{{mode: string(failure.IssuerTimeout), alts: []string{string(failure.UpstreamDialTimeout)}, values: map[string]string{"grpc_code": "DeadlineExceeded"}}},
		},
		{
			name: "internal error names both causes",
			text: grpcWrap("remote error: tls: internal error"),
			want: []want{{mode: string(failure.IssuerError), alts: []string{string(failure.CoordinatorVersionMismatch)}}},
		},
		{
			name: "internal error with the Coordinator's log deciding it",
			text: grpcWrap("remote error: tls: internal error") + "\n" +
				`W0601 12:00:01.5 server.go:870] grpc: Server.Serve failed to complete security handshake from "10.244.3.17:51230": illegal base64 data at input byte 4`,
			want: []want{
				{mode: string(failure.CoordinatorVersionMismatch), alts: []string{string(failure.IssuerError)}},
				{mode: string(failure.CoordinatorVersionMismatch), values: map[string]string{"client": "10.244.3.17:51230", "input_byte": "4"}},
			},
		},
		{
			name: "no attestation extension, inside a JSON log line",
			text: jsonLog(grpcWrap("no valid attestation document certificate extensions found")),
			want: []want{{mode: string(failure.UnexpectedCertificate)}},
		},
		{
			name: "not TLS",
			text: "  transport: authentication handshake failed: tls: first record does not look like a TLS handshake",
			want: []want{{mode: string(failure.UpstreamNotTLS)}},
		},
		{
			name: "connection refused on localhost",
			text: `rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7777: connect: connection refused"`,
			want: []want{{mode: string(failure.UpstreamRefused), values: map[string]string{"address": "127.0.0.1:7777"}}},
		},
		{
			name: "connection refused on IPv6 and a host name, deduplicated",
			text: "dial tcp [fd00::12]:1313: connect: connection refused\n" +
				"dial tcp coordinator.contrast.svc:1313: connect: connection refused\n" +
				"dial tcp [fd00::12]:1313: connect: connection refused",
			want: []want{
				{mode: string(failure.UpstreamRefused), values: map[string]string{"address": "[fd00::12]:1313"}},
				{mode: string(failure.UpstreamRefused), values: map[string]string{"address": "coordinator.contrast.svc:1313"}},
			},
		},
		{
			name: "DNS failure",
			text: `desc = "transport: Error while dialing: dial tcp: lookup coordinator.demo.svc.cluster.local on 10.96.0.10:53: no such host"`,
			want: []want{{mode: string(failure.UpstreamDNSFailure), values: map[string]string{"host": "coordinator.demo.svc.cluster.local", "resolver": "10.96.0.10:53", "error": "no such host"}}},
		},
		{
			name: "dial timeout",
			text: `transport: Error while dialing: dial tcp 203.0.113.77:1313: i/o timeout`,
			want: []want{{mode: string(failure.UpstreamDialTimeout), values: map[string]string{"address": "203.0.113.77:1313", "error": "i/o timeout"}}},
		},
		{
			name: "TDX MR_CONFIG_ID, old decimal form, wrapped",
			text: wrapAt(grpcWrap("with AtlsConnectionNonce "+nonce+":  validator tdx-1 failed: validating report data: quote field MR_CONFIG_ID is "+decList(tdxGot...)+". Expect "+decList(tdxWant...)), 80),
			want: []want{{mode: string(failure.PolicyHashMismatch), values: map[string]string{
				"validator": "tdx-1", "platform": "tdx", "nonce": nonce, "field": "MR_CONFIG_ID",
				"observed_policy_hash": hexFromInts(seq(200, 32)), "expected_policy_hash": hexFromInts(seq(7, 32)),
			}}},
		},
		{
			name: "TDX MR_CONFIG_ID, hex form with a non-zero tail",
			text: grpcWrap("validator tdx-0 failed: validating report data: quote field MR_CONFIG_ID is " + hexGot + hexOf(0x01, 16) + ". Expect " + hexWant + hexOf(0, 16)),
			want: []want{{mode: string(failure.PolicyHashMismatch), values: map[string]string{
				"observed_policy_hash": hexGot, "expected_policy_hash": hexWant, "mr_config_id_tail": hexOf(0x01, 16),
			}}},
		},
		{
			name: "SNP: one validator's chain fails, the other's HOST_DATA and MEASUREMENT",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ":  validator snp-0-MILAN failed: verifying report: report signature verification error: x509: ECDSA verification failure\n" +
				" validator snp-1-GENOA failed: validating report claims: report field HOST_DATA is " + hexGot + ". Expect " + hexWant +
				"; report field MEASUREMENT is " + hexOf(0x11, 48) + ". Expect " + hexOf(0x22, 48)),
			want: []want{
				{mode: string(failure.EvidenceInvalid), values: map[string]string{"validator": "snp-0-MILAN", "product": "MILAN", "nonce": nonce}},
				{mode: string(failure.PolicyHashMismatch), values: map[string]string{"validator": "snp-1-GENOA", "nonce": nonce, "observed_policy_hash": hexGot, "expected_policy_hash": hexWant}},
				{mode: string(failure.MeasurementMismatch), values: map[string]string{"validator": "snp-1-GENOA", "observed": hexOf(0x11, 48), "expected": hexOf(0x22, 48)}},
			},
		},
		{
			name: "HOST_DATA expectation runs into the next pasted line",
			text: "report field HOST_DATA is " + hexGot + ". Expect " + hexWant + "\n2025-06-01T12:00:00Z next line",
			want: []want{{mode: string(failure.PolicyHashMismatch), values: map[string]string{"observed_policy_hash": hexGot, "expected_policy_hash": hexWant}}},
		},
		{
			name: "newest CLI policy hash check",
			text: "Error: wrong policy hash for Coordinator: got " + hexWant + ", want " + hexGot,
			want: []want{{mode: string(failure.PolicyHashMismatch), values: map[string]string{"observed_policy_hash": hexWant, "expected_policy_hash": hexGot}}},
		},
		{
			name: "no matching validators",
			text: grpcWrap("no matching validators found"),
			want: []want{{mode: string(failure.NoMatchingValidator)}},
		},
		{
			name: "report data, chip ID, PIID, vCPU",
			text: "validator snp-0-GENOA failed: validating report claims: report field REPORT_DATA is " + hexOf(1, 64) + ". Expect " + hexOf(2, 64) + "\n" +
				" validator snp-1-MILAN failed: chip ID " + hexOf(0xcd, 64) + " not in allowed chip IDs\n" +
				" validator tdx-0 failed: PIID " + hexOf(0x9a, 16) + " not in allowed PIIDs\n" +
				" validator snp-2 failed: measurement does not match any vCPU count from 1 to 220",
			want: []want{
				{mode: string(failure.ReportDataMismatch), values: map[string]string{"observed": hexOf(1, 64), "expected": hexOf(2, 64)}},
				{mode: string(failure.ReferenceValueMismatch), values: map[string]string{"chip_id": hexOf(0xcd, 64), "validator": "snp-1-MILAN"}},
				{mode: string(failure.ReferenceValueMismatch), values: map[string]string{"piid": hexOf(0x9a, 16), "validator": "tdx-0"}},
				{mode: string(failure.MeasurementMismatch), values: map[string]string{"validator": "snp-2", "vcpu_range": "1-220"}},
			},
		},
		{
			name: "TCB below minimum",
			text: "validator snp-0-GENOA failed: validating report claims: the report's REPORTED_TCB {Fmc:0 BlSpl:7 TeeSpl:0 SnpSpl:14 UcodeSpl:72} is lower than the policy minimum TCB {Fmc:0 BlSpl:9 TeeSpl:0 SnpSpl:23 UcodeSpl:72} in at least one component",
			want: []want{{mode: string(failure.TCBMismatch), values: map[string]string{
				"observed": "{Fmc:0 BlSpl:7 TeeSpl:0 SnpSpl:14 UcodeSpl:72}", "minimum": "{Fmc:0 BlSpl:9 TeeSpl:0 SnpSpl:23 UcodeSpl:72}",
			}}},
		},
		{
			name: "unsupported atls version in the Coordinator's log",
			text: `grpc: Server.Serve failed to complete security handshake from "10.1.2.3:6000": proto refers to an unsupported atls version`,
			want: []want{{mode: string(failure.UnsupportedATLSVersion), values: map[string]string{"client": "10.1.2.3:6000"}}},
		},
		{
			name: "readiness probe EOF in the Coordinator's log",
			text: `grpc: Server.Serve failed to complete security handshake from "10.244.0.1:33210": EOF`,
			want: []want{{mode: ModeCoordinatorProbeEOF, values: map[string]string{"client": "10.244.0.1:33210"}}},
		},
		{
			name: "clock skew: Coordinator ahead",
			text: grpcWrap("verify certificate: x509: certificate has expired or is not yet valid: current time 2024-11-05T09:10:00Z is before 2024-11-05T10:25:30Z"),
			want: []want{{mode: string(failure.ClockSkew), values: map[string]string{
				"client_time": "2024-11-05T09:10:00Z", "cert_not_before": "2024-11-05T10:25:30Z",
				"coordinator_clock_offset": "+3h15m30s", "coordinator_clock_offset_ms": "11730000",
			}}},
		},
		{
			name: "clock skew: Coordinator behind, other zone, wrapped",
			text: wrapAt("x509: certificate has expired or is not yet valid: current time 2025-01-20T18:00:00+01:00 is after 2025-01-20T16:45:00Z", 40),
			want: []want{{mode: string(failure.ClockSkew), values: map[string]string{
				"client_time": "2025-01-20T18:00:00+01:00", "cert_not_after": "2025-01-20T16:45:00Z",
				"coordinator_clock_offset": "-2h15m0s", "coordinator_clock_offset_ms": "-8100000",
			}}},
		},
		{
			name: "user API states",
			text: "rpc error: code = FailedPrecondition desc = no manifest configured\n" +
				"rpc error: code = Internal desc = syncing internal state: coordinator is in recovery mode\n" +
				"Error: active manifest does not match expected manifest",
			want: []want{
				{mode: string(failure.CoordinatorNoManifest), values: map[string]string{"grpc_code": "FailedPrecondition"}},
				{mode: string(failure.CoordinatorRecoveryMode), values: map[string]string{"grpc_code": "Internal"}},
				{mode: string(failure.ManifestMismatch)},
			},
		},
		{
			name: "image VOLUME without mount, slog quoting",
			text: slogWrap(`The following volumes declared in image config don't have corresponding Kubernetes mounts: ["/srv/uploads", "/var/lib/pgsql"]`),
			want: []want{{mode: ModeImageVolumeWithoutMount, values: map[string]string{"paths": "/srv/uploads, /var/lib/pgsql"}}},
		},
		{
			name: "blocked by policy in kubectl events",
			text: "LAST SEEN  TYPE     REASON  OBJECT             MESSAGE\n" +
				`4m         Warning  Failed  Pod/emoji-web-7f9c  kubelet  Error: failed to create containerd task: failed to create shim task: "CreateContainerRequest is blocked by policy: ...`,
			want: []want{{mode: ModePolicyBlockedContainer, values: map[string]string{"pod": "emoji-web-7f9c", "request": "CreateContainerRequest"}}},
		},
		{
			name: "exec blocked by policy",
			text: `error: Internal error occurred: error executing command in container: failed to exec in container: ExecProcessRequest is blocked by policy`,
			want: []want{{mode: ModePolicyBlockedRequest, values: map[string]string{"request": "ExecProcessRequest"}}},
		},
		{
			name: "containerd picked another image",
			text: `failed to create shim task: "CreateContainerRequest is blocked by policy: allow_create_container_input = {\"OCI\":{\"Annotations\":{\"io.kubernetes.cri.container-name\":\"web\",\"io.kubernetes.cri.image-name\":\"registry.example/team/web:2.1\",\"io.kubernetes.cri.sandbox-name\":\"web-5d8\"}}}"`,
			want: []want{
				{mode: ModePolicyBlockedContainer},
				{mode: ModeContainerdWrongImage, values: map[string]string{"image": "registry.example/team/web:2.1", "container": "web", "pod": "web-5d8"}},
			},
		},
		{
			name: "pod VM out of space",
			text: "90s   Warning   Failed   Pod/batch-job-x2x   Error: failed to create containerd task: failed to create shim task: failed to handle layer: hasher sha256: failed to unpack [...] No space left on device (os error 28)",
			want: []want{{mode: ModePodVMOutOfMemory, values: map[string]string{"pod": "batch-job-x2x", "phase": "image layer unpack"}}},
		},
		{
			name: "a full disk on an ordinary host is not the pod VM",
			text: "write /var/log/app.log: no space left on device",
			want: nil,
		},
		{
			name: "runtime class placeholder and a missing versioned one",
			text: `Error from server (Forbidden): pods "db-0" is forbidden: pod rejected: RuntimeClass "contrast-cc" not found` + "\n" +
				`Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for "contrast-cc-metal-qemu-snp-0badc0de" is configured`,
			want: []want{
				{mode: ModeRuntimeClassMissing, values: map[string]string{"runtime_class": "contrast-cc", "pod": "db-0"}},
				{mode: ModeRuntimeClassMissing, values: map[string]string{"runtime_class": "contrast-cc-metal-qemu-snp-0badc0de"}},
			},
		},
		{
			name: "runtime class versions differ",
			text: "NAME                               HANDLER                            AGE\n" +
				"contrast-cc-aks-clh-snp-5e6f7a8b   contrast-cc-aks-clh-snp-5e6f7a8b   2d\n" +
				"$ contrast --version\n    runtime handler:      contrast-cc-aks-clh-snp-c0ffee11\n",
			want: []want{{mode: ModeRuntimeClassMismatch, values: map[string]string{
				"runtime_classes":     "contrast-cc-aks-clh-snp-5e6f7a8b, contrast-cc-aks-clh-snp-c0ffee11",
				"cli_runtime_handler": "contrast-cc-aks-clh-snp-c0ffee11",
			}}},
		},
		{
			name: "kubectl port-forward to a confidential pod",
			text: `E0601 portforward.go:413] an error occurred forwarding 1313 -> 1313: error forwarding port 1313 to pod 3b1f0c9e7a, uid : failed to execute portforward in network namespace "/var/run/netns/cni-1": failed to connect to localhost:1313 inside namespace "3b1f", IPv4: dial tcp4 127.0.0.1:1313: connect: connection refused IPv6 dial tcp6 [::1]:1313: connect: connection refused`,
			want: []want{{mode: ModePortForwardUnsupported, values: map[string]string{"port": "1313", "pod_sandbox": "3b1f0c9e7a"}}},
		},
		{
			name: "validator errors in an unquoted log keep the lines between them",
			text: "validator snp-0-GENOA failed: validating report claims: report field HOST_DATA is " + hexGot + ". Expect " + hexWant + "\n" +
				"dial tcp 10.9.8.7:1313: connect: connection refused\n" +
				"validator tdx-0 failed:\nverifying report signature: unable to verify message digest using quote's signature and ecdsa attestation key\n" +
				"an unrelated line",
			want: []want{
				{mode: string(failure.PolicyHashMismatch), values: map[string]string{"validator": "snp-0-GENOA"}},
				{mode: string(failure.UpstreamRefused), values: map[string]string{"address": "10.9.8.7:1313"}},
				{mode: string(failure.EvidenceInvalid), values: map[string]string{"validator": "tdx-0", "platform": "tdx",
					"cause": "verifying report signature: unable to verify message digest using quote's signature and ecdsa attestation key"}},
			},
		},
		{
			name: "causes without a known field",
			text: " validator snp-0-MILAN failed: verifying report: VCEK could not be verified by any trusted roots\n" +
				" validator snp-1-GENOA failed: validating report claims: found unauthorized debug capability\n" +
				" validator tdx-0 failed: validating xfam: XFAM mismatch: got e702060000000000, want e718060000000000 (ignoring CET bits)\n" +
				" validator tdx-1 failed: validating report data: something new\n" +
				" validator snp-2 failed: callback failed: the future",
			want: []want{
				{mode: string(failure.EvidenceInvalid), values: map[string]string{"cause": "verifying report: VCEK could not be verified by any trusted roots"}},
				{mode: string(failure.ReferenceValueMismatch), values: map[string]string{"validator": "snp-1-GENOA", "claim": "found unauthorized debug capability"}},
				{mode: string(failure.ReferenceValueMismatch), values: map[string]string{"validator": "tdx-0", "claim": "XFAM mismatch: got e702060000000000, want e718060000000000"}},
				{mode: string(failure.ReferenceValueMismatch), values: map[string]string{"validator": "tdx-1", "cause": "validating report data: something new"}},
				{mode: ModeValidatorFailed, values: map[string]string{"validator": "snp-2", "cause": "callback failed: the future"}},
			},
		},
		{
			name: "a bare mode name",
			text: "  lb_closed_early\n",
			want: []want{{mode: string(failure.LBClosedEarly)}},
		},
		{
			name: "modes in ccproxy's own log and trace output",
			text: `time=2025-06-01T12:00:00Z level=WARN msg=connection ccproxy.failure_mode=issuer_timeout upstream=coordinator:1313` + "\n" +
				`{"key":"ccproxy.failure_mode","value":{"stringValue":"upstream_reset"}}` + "\n" +
				`ccproxy.failure_mode=not_a_mode`,
			want: []want{{mode: string(failure.IssuerTimeout)}, {mode: string(failure.UpstreamReset)}},
		},
		{
			name: "unknown text",
			text: "everything is fine\nthe pods are running",
			want: nil,
		},
		{
			name: "repeated error is counted once",
			text: grpcWrap("EOF") + "\n" + grpcWrap("EOF") + "\n" + grpcWrap("no matching validators found"),
			want: []want{{mode: string(failure.LBClosedEarly)}, {mode: string(failure.NoMatchingValidator)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(tt.text)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d findings %v, want %d", len(got), modes(got), len(tt.want))
			}
			for i, w := range tt.want {
				f := got[i]
				if f.Mode != w.mode {
					t.Errorf("finding %d: mode %q, want %q (all: %v)", i, f.Mode, w.mode, modes(got))
				}
				if f.Contract != failure.Mode(w.mode).Known() {
					t.Errorf("finding %d: contract = %v", i, f.Contract)
				}
				for k, v := range w.values {
					if g := f.Values.Get(k); g != v {
						t.Errorf("finding %d (%s): value %s = %q, want %q", i, f.Mode, k, g, v)
					}
				}
				if strings.Join(f.Alternatives, ",") != strings.Join(w.alts, ",") {
					t.Errorf("finding %d: alternatives %v, want %v", i, f.Alternatives, w.alts)
				}
				if f.Summary == "" || f.Meaning == "" || len(f.NextSteps) == 0 || f.Excerpt == "" {
					t.Errorf("finding %d (%s) is incomplete: %+v", i, f.Mode, f)
				}
			}
		})
	}
}

func TestEveryModeHasText(t *testing.T) {
	for _, m := range failure.All {
		tx, ok := modeText[m]
		if !ok || tx.meaning == "" || len(tx.steps) == 0 {
			t.Errorf("mode %s has no explanation", m)
		}
	}
}

func hexFromInts(v []int) string {
	var b strings.Builder
	for _, x := range v {
		fmt.Fprintf(&b, "%02x", x)
	}
	return b.String()
}

func modes(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Mode
	}
	return out
}

func TestRepeatedErrorCount(t *testing.T) {
	fs := Explain(strings.Repeat(grpcWrap("EOF")+"\n", 3))
	if len(fs) != 1 || fs[0].Count != 3 {
		t.Fatalf("got %+v, want one finding seen 3 times", fs)
	}
}

func TestPolicyDecision(t *testing.T) {
	devHash := hexOf(0x5e, 32)
	tests := []struct {
		name    string
		text    string
		reasons string
		values  map[string]string
		meaning string // substring of the meaning
	}{
		{
			name: "deviceHash not found, blob wrapped over lines",
			text: "failed to create containerd task: failed to create shim task: failed to create container " + hexOf(0x18, 32) +
				": guest RPC failure: container creation denied due to policy: policyDecision< " +
				wrapAt(decisionBlob(t, map[string]any{
					"decision": "deny",
					"input":    map[string]any{"deviceHash": devHash, "rule": "mount_device", "target": "/run/mounts/m12"},
					"reason":   map[string]any{"errors": []string{"deviceHash not found"}},
				}), 50) + " >policyDecision: unknown",
			reasons: "deviceHash not found",
			values:  map[string]string{"decision": "deny", "rule": "mount_device", "input.deviceHash": devHash, "input.target": "/run/mounts/m12"},
			meaning: "dm-verity root hash (" + devHash + ")",
		},
		{
			name: "invalid env list, truncated input",
			text: "container creation denied due to policy: policyDecision< " + decisionBlob(t, map[string]any{
				"decision":  "deny",
				"input":     map[string]any{"rule": "create_container"},
				"reason":    map[string]any{"errors": []string{"invalid env list: API_TOKEN,LOG_LEVEL", "invalid command"}},
				"truncated": []string{"input"},
			}) + " >policyDecision",
			reasons: "invalid env list: API_TOKEN,LOG_LEVEL; invalid command",
			values:  map[string]string{"truncated": "input", "rule": "create_container"},
			meaning: "API_TOKEN,LOG_LEVEL",
		},
		{
			name:    "decoded JSON pasted",
			text:    `{"decision":"deny","reason":{"errors":["invalid mount list: /mnt/secrets"]}}`,
			reasons: "invalid mount list: /mnt/secrets",
			values:  map[string]string{"decision": "deny"},
			meaning: "/mnt/secrets",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Explain(tt.text)
			if len(fs) != 1 || fs[0].Mode != ModeACIPolicyDenied {
				t.Fatalf("got %v, want one %s", modes(fs), ModeACIPolicyDenied)
			}
			f := fs[0]
			if g := f.Values.Get("reasons"); g != tt.reasons {
				t.Errorf("reasons %q, want %q", g, tt.reasons)
			}
			for k, v := range tt.values {
				if g := f.Values.Get(k); g != v {
					t.Errorf("value %s = %q, want %q", k, g, v)
				}
			}
			if !strings.Contains(f.Meaning, tt.meaning) {
				t.Errorf("meaning %q does not mention %q", f.Meaning, tt.meaning)
			}
		})
	}

	t.Run("cut blob", func(t *testing.T) {
		fs := Explain("denied due to policy: policyDecision< eyJkZWNpc2lvbiI6ImRl%% >policyDecision")
		// The blob contains a character outside base64: the pattern does not
		// take it for a blob, but the denial is still recognised.
		if len(fs) != 1 || fs[0].Mode != ModeACIPolicyDenied {
			t.Fatalf("got %v", modes(fs))
		}
	})
	t.Run("undecodable blob", func(t *testing.T) {
		fs := Explain("policyDecision< eyJkZWNpc2lvbiI6ImRl= >policyDecision")
		if len(fs) != 1 || fs[0].Values.Get("blob") == "" {
			t.Fatalf("got %+v", fs)
		}
	})
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\\\"b\\\"", `a"b"`},
		{`msg="x \\\"y\\\""`, `msg="x "y""`},
		{"\x1b[1;31mred\x1b[0m text", "red text"},
		{"hand\nshake  failed:\r\n   EOF", "handshake failed: EOF"},
		{`\u003cnil\u003e`, "<nil>"},
		{`C:\path`, `C:\path`},
		{"tab\there", "tab here"},
	}
	for _, tt := range tests {
		if got, _ := normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	fs := Explain(grpcWrap("remote error: tls: internal error"))
	if err := WriteText(&b, fs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"1. issuer_error", "or:      coordinator_version_mismatch", "--nonce-in sni", "next:"} {
		if !strings.Contains(out, s) {
			t.Errorf("text output lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	if err := WriteText(&b, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No known error") {
		t.Errorf("empty output: %q", b.String())
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	fs := Explain("dial tcp 10.0.0.9:1313: connect: connection refused")
	if err := WriteJSON(&b, fs); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, b.String())
	}
	if !r.Recognized || len(r.Findings) != 1 || r.Findings[0].Values.Get("address") != "10.0.0.9:1313" || !r.Findings[0].Contract {
		t.Fatalf("round trip lost data: %s", b.String())
	}
	// Values keep their order as an object.
	if !strings.Contains(b.String(), `"values": {`) {
		t.Errorf("values not an object: %s", b.String())
	}
}
