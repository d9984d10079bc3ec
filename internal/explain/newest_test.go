package explain

import (
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// checkFindings compares Explain's findings for text with want, in order.
func checkFindings(t *testing.T, text string, want []want) []Finding {
	t.Helper()
	got := Explain(text)
	if len(got) != len(want) {
		for _, f := range got {
			t.Logf("  %s %v (excerpt %q)", f.Mode, f.Values, f.Excerpt)
		}
		t.Fatalf("got %d findings %v, want %d", len(got), modes(got), len(want))
	}
	for i, w := range want {
		f := got[i]
		if f.Mode != w.mode {
			t.Errorf("finding %d: mode %q, want %q (all: %v)", i, f.Mode, w.mode, modes(got))
		}
		if f.Contract != failure.Mode(w.mode).Known() {
			t.Errorf("finding %d: contract = %v", i, f.Contract)
		}
		for k, v := range w.values {
			if g := f.Values.Get(k); g != v {
				t.Errorf("finding %d (%s): value %s = %q, want %q (all: %v)", i, f.Mode, k, g, v, f.Values)
			}
		}
		if strings.Join(f.Alternatives, ",") != strings.Join(w.alts, ",") {
			t.Errorf("finding %d: alternatives %v, want %v", i, f.Alternatives, w.alts)
		}
		if f.Summary == "" || f.Meaning == "" || len(f.NextSteps) == 0 || f.Excerpt == "" {
			t.Errorf("finding %d (%s) is incomplete: %+v", i, f.Mode, f)
		}
	}
	return got
}

// setWrap wraps a handshake cause the way `contrast set` prints it.
func setWrap(cause string) string {
	return `Error: setting manifest: failed to dial coordinator: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: ` + cause + `"`
}

// joined puts errors on separate lines, as errors.Join does (the CLI's
// %q quoting turns the line breaks into \n).
func joined(errs ...string) string { return strings.Join(errs, "\n") }

// quotedJoined is joined inside the CLI's quoted desc: line breaks escaped.
func quotedJoined(errs ...string) string { return strings.Join(errs, `\n`) }

// TestExplainNewestCLITexts covers the texts of issue 17: what the newest
// CLIs and Coordinators print.
func TestExplainNewestCLITexts(t *testing.T) {
	nonce := "0f1e2d3c4b5a69788796a5b4c3d2e1f0" + "00112233445566778899aabbccddeeff"
	nonce2 := "a1b2c3d4e5f60718293a4b5c6d7e8f90" + "1234567890abcdef1234567890abcdef"
	h1, h2, h3, h4 := hexOf(0x4e, 32), hexOf(0x7a, 32), hexOf(0xc1, 32), hexOf(0x09, 32)
	idKey, idKey2, zeros := hexOf(0xfe, 48), hexOf(0x3d, 48), hexOf(0, 48)
	chip, chip2 := hexOf(0xab, 64), hexOf(0x5c, 64)
	piid, piid2 := hexOf(0x9a, 16), hexOf(0x21, 16)
	const policy = string(failure.PolicyHashMismatch)
	const refVal = string(failure.ReferenceValueMismatch)
	const measure = string(failure.MeasurementMismatch)
	const apiErr = string(failure.CoordinatorAPIError)
	const recovery = string(failure.CoordinatorRecoveryMode)
	const unreachable = string(failure.UpstreamUnreachable)

	tests := []struct {
		name string
		text string
		want []want
	}{
		// 1. wrong policy hash for Coordinator with several accepted hashes.
		{
			name: "policy hash list, bare",
			text: "Error: wrong policy hash for Coordinator: got " + h1 + ", want [" + h2 + " " + h3 + "]",
			want: []want{{mode: policy, values: map[string]string{
				"observed_policy_hash": h1, "expected_policy_hashes": h2 + ", " + h3, "expected_policy_hash": "",
			}}},
		},
		{
			name: "policy hash list, full CLI wrapping with nonce",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ": wrong policy hash for Coordinator: got " + h4 + ", want [" + h1 + " " + h2 + " " + h3 + "]"),
			want: []want{{mode: policy, values: map[string]string{
				"observed_policy_hash": h4, "expected_policy_hashes": h1 + ", " + h2 + ", " + h3, "grpc_code": "Unavailable",
			}}},
		},
		{
			name: "policy hash list behind a validator, slog-quoted and wrapped at 70 columns",
			text: wrapAt(slogWrap(setWrap("with AtlsConnectionNonce "+nonce2+":  validator snp-0-GENOA failed: wrong policy hash for Coordinator: got "+h3+", want ["+h4+" "+h1+"]")), 70),
			want: []want{{mode: policy, values: map[string]string{
				"observed_policy_hash": h3, "expected_policy_hashes": h4 + ", " + h1, "validator": "snp-0-GENOA", "nonce": nonce2,
			}}},
		},
		{
			name: "policy hash list with one element",
			text: "wrong policy hash for Coordinator: got " + strings.ToUpper(h2) + ", want [" + h3 + "]",
			want: []want{{mode: policy, values: map[string]string{"observed_policy_hash": h2, "expected_policy_hash": h3}}},
		},
		{
			name: "policy hash list whose blank became a line break",
			text: "wrong policy hash for Coordinator: got " + h1 + ", want [" + h2 + "\n" + h3 + "]",
			want: []want{{mode: policy, values: map[string]string{"observed_policy_hash": h1, "expected_policy_hashes": h2 + ", " + h3}}},
		},
		{
			name: "single policy hash still works inside the CLI wrapping",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ": wrong policy hash for Coordinator: got " + h2 + ", want " + h1),
			want: []want{{mode: policy, values: map[string]string{"observed_policy_hash": h2, "expected_policy_hash": h1}}},
		},

		// 2. report ID key not trusted.
		{
			name: "ID key not trusted, full CLI wrapping",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ":  validator snp-0-GENOA failed: validating report claims: report ID key not trusted: " + idKey),
			want: []want{{mode: refVal, values: map[string]string{
				"field": "ID_KEY_DIGEST", "observed": idKey, "validator": "snp-0-GENOA", "product": "GENOA", "nonce": nonce,
			}}},
		},
		{
			name: "ID key all zeros (no ID block), in a sub-validator, JSON log",
			text: jsonLog(setWrap("with AtlsConnectionNonce " + nonce2 + ": sub-validator 2: validating report claims: report ID key not trusted: " + zeros)),
			want: []want{{mode: refVal, values: map[string]string{"field": "ID_KEY_DIGEST", "observed": zeros, "sub_validator": "2", "nonce": nonce2}}},
		},
		{
			name: "ID key not trusted, bare and wrapped inside the digest",
			text: wrapAt("report ID key not trusted: "+idKey2, 50),
			want: []want{{mode: refVal, values: map[string]string{"field": "ID_KEY_DIGEST", "observed": idKey2}}},
		},
		{
			name: "author key not trusted",
			text: " validator snp-1-MILAN failed: validating report claims: report author key not trusted: " + idKey,
			want: []want{{mode: refVal, values: map[string]string{"field": "AUTHOR_KEY_DIGEST", "observed": idKey, "validator": "snp-1-MILAN"}}},
		},

		// 3. the iterative SNP validator's measurement error.
		{
			name: "vCPU measurement, full CLI wrapping with a sub-validator",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ":  validator snp-0-GENOA failed: sub-validator 3: measurement does not match any vCPU count from 1 to 220"),
			want: []want{{mode: measure, values: map[string]string{
				"validator": "snp-0-GENOA", "sub_validator": "3", "vcpu_range": "1-220", "field": "MEASUREMENT", "nonce": nonce,
			}}},
		},
		{
			name: "vCPU measurement, another range, wrapped at 45 columns",
			text: wrapAt("Error: getting manifests: "+grpcWrap("validator snp-2-MILAN failed: measurement does not match any vCPU count from 2 to 64"), 45),
			want: []want{{mode: measure, values: map[string]string{"validator": "snp-2-MILAN", "vcpu_range": "2-64"}}},
		},

		// 4. chip ID and PIID allow-lists.
		{
			name: "chip ID per sub-validator, joined, full CLI wrapping",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ": " + quotedJoined(
				"sub-validator 0: chip ID "+chip+" not in allowed chip IDs",
				"sub-validator 1: chip ID "+chip2+" not in allowed chip IDs")),
			want: []want{
				{mode: refVal, values: map[string]string{"field": "CHIP_ID", "chip_id": chip, "sub_validator": "0", "nonce": nonce}},
				{mode: refVal, values: map[string]string{"field": "CHIP_ID", "chip_id": chip2, "sub_validator": "1", "nonce": nonce, "grpc_code": "Unavailable"}},
			},
		},
		{
			name: "chip ID, bare",
			text: "chip ID " + chip2 + " not in allowed chip IDs",
			want: []want{{mode: refVal, values: map[string]string{"chip_id": chip2}}},
		},
		{
			name: "PIID, full CLI wrapping, slog-quoted",
			text: slogWrap(grpcWrap("with AtlsConnectionNonce " + nonce2 + ":  validator tdx-0 failed: PIID " + piid + " not in allowed PIIDs")),
			want: []want{{mode: refVal, values: map[string]string{"field": "PIID", "piid": piid, "validator": "tdx-0", "platform": "tdx", "nonce": nonce2}}},
		},
		{
			name: "PIID in a sub-validator, wrapped at 33 columns",
			text: wrapAt(setWrap("sub-validator 4: PIID "+piid2+" not in allowed PIIDs"), 33),
			want: []want{{mode: refVal, values: map[string]string{"piid": piid2, "sub_validator": "4"}}},
		},

		{
			name: "TDX MR_SEAM is a reference value, not the launch measurement",
			text: grpcWrap("with AtlsConnectionNonce " + nonce + ":  validator tdx-0 failed: validating report data: quote field MR_SEAM is " + hexOf(0x31, 48) + ". Expect " + hexOf(0x32, 48)),
			want: []want{{mode: refVal, values: map[string]string{"field": "MR_SEAM", "observed": hexOf(0x31, 48), "expected": hexOf(0x32, 48), "validator": "tdx-0"}}},
		},
		{
			name: "TDX XFAM field",
			text: "validator tdx-0 failed: validating report data: quote field XFAM is e702060000000000. Expect e718060000000000",
			want: []want{{mode: refVal, values: map[string]string{"field": "XFAM", "observed": "e702060000000000", "expected": "e718060000000000"}}},
		},
		{
			name: "SNP mitigation vector is a minimum (tcb_mismatch, as in package attest)",
			text: "validator snp-0-GENOA failed: validating report claims: launch mitigation vector (0x1) is missing required bits; expected at least (0x3)",
			want: []want{{mode: string(failure.TCBMismatch), values: map[string]string{"component": "launch mitigation vector", "observed": "0x1", "minimum": "0x3"}}},
		},

		// 5. sub-validator prefixes in every arrangement.
		{
			name: "validators inside sub-validators, each its own cause",
			text: setWrap("with AtlsConnectionNonce " + nonce + ": " + quotedJoined(
				"sub-validator 0: validator snp-0-MILAN failed: verifying report: report signature verification error: x509: ECDSA verification failure",
				"sub-validator 1: validator snp-1-GENOA failed: validating report claims: report field HOST_DATA is "+h1+". Expect "+h2)),
			want: []want{
				{mode: string(failure.EvidenceInvalid), values: map[string]string{"validator": "snp-0-MILAN", "sub_validator": "0", "nonce": nonce}},
				{mode: policy, values: map[string]string{"validator": "snp-1-GENOA", "sub_validator": "1", "observed_policy_hash": h1, "expected_policy_hash": h2}},
			},
		},
		{
			name: "a sub-validator without a name after a named one keeps no name",
			text: joined(
				"sub-validator 0: validator snp-0-GENOA failed: measurement does not match any vCPU count from 1 to 220",
				"sub-validator 1: chip ID "+chip+" not in allowed chip IDs"),
			want: []want{
				{mode: measure, values: map[string]string{"validator": "snp-0-GENOA", "sub_validator": "0"}},
				{mode: refVal, values: map[string]string{"validator": "", "sub_validator": "1", "chip_id": chip}},
			},
		},
		{
			name: "one validator wrapping several sub-validators",
			text: grpcWrap("with AtlsConnectionNonce " + nonce2 + ":  validator snp-0-GENOA failed: " + quotedJoined(
				"sub-validator 0: validating report claims: report ID key not trusted: "+idKey,
				"sub-validator 1: measurement does not match any vCPU count from 1 to 220",
				"sub-validator 2: callback failed: something new")),
			want: []want{
				{mode: refVal, values: map[string]string{"validator": "snp-0-GENOA", "sub_validator": "0", "observed": idKey}},
				{mode: measure, values: map[string]string{"validator": "snp-0-GENOA", "sub_validator": "1"}},
				{mode: ModeValidatorFailed, values: map[string]string{"validator": "snp-0-GENOA", "sub_validator": "2", "cause": "callback failed: something new"}},
			},
		},

		// 6. recovery mode, old and new.
		{
			name: "recovery mode from the state guard (FailedPrecondition)",
			text: "Error: getting manifests: rpc error: code = FailedPrecondition desc = coordinator is in recovery mode",
			want: []want{{mode: recovery, values: map[string]string{"grpc_code": "FailedPrecondition"}}},
		},
		{
			name: "recovery mode from the state guard, contrast set, slog-quoted and wrapped",
			text: "$ contrast set -c 192.0.2.10:1313 resources/\n" + wrapAt(slogWrap("setting manifest: rpc error: code = FailedPrecondition desc = coordinator is in recovery mode"), 40),
			want: []want{{mode: recovery, values: map[string]string{"grpc_code": "FailedPrecondition", "coordinator": "192.0.2.10:1313"}}},
		},
		{
			name: "recovery mode, older Coordinator (Internal)",
			text: "$ contrast verify -c 192.0.2.10:1313\nError: getting manifests: rpc error: code = Internal desc = syncing internal state: coordinator is in recovery mode",
			want: []want{{mode: recovery, values: map[string]string{"grpc_code": "Internal", "coordinator": "192.0.2.10:1313"}}},
		},

		// 7. other user-API statuses.
		{
			name: "unknown service from contrast verify",
			text: "Error: getting manifests: getting manifests: rpc error: code = Unimplemented desc = unknown service edgelesssys.contrast.userapi.UserAPI",
			want: []want{{mode: apiErr, values: map[string]string{
				"grpc_code": "Unimplemented", "message": "unknown service edgelesssys.contrast.userapi.UserAPI", "call": "GetManifests",
			}}},
		},
		{
			name: "unknown method without the CLI's wrapping, wrapped at 40 columns",
			text: wrapAt("rpc error: code = Unimplemented desc = unknown method GetManifests for service userapi.UserAPI", 40),
			want: []want{{mode: apiErr, values: map[string]string{
				"grpc_code": "Unimplemented", "message": "unknown method GetManifests for service userapi.UserAPI",
			}}},
		},
		{
			name: "permission denied from contrast set",
			text: "$ contrast set -c 10.0.0.7:1313 resources/\nPermission denied. Specify a workload owner key with --workload-owner-key.\n" +
				"Error: setting manifest: rpc error: code = PermissionDenied desc = validating peer: peer not authorized",
			want: []want{{mode: apiErr, values: map[string]string{
				"grpc_code": "PermissionDenied", "message": "validating peer: peer not authorized", "call": "SetManifest", "coordinator": "10.0.0.7:1313",
			}}},
		},
		{
			name: "internal error getting state, JSON log",
			text: jsonLog("getting manifests: rpc error: code = Internal desc = getting state: reading history: open /mnt/state/history: input/output error"),
			want: []want{{mode: apiErr, values: map[string]string{
				"grpc_code": "Internal", "message": "getting state: reading history: open /mnt/state/history: input/output error", "call": "GetManifests",
			}}},
		},
		{
			name: "message with its own quotes (RBAC-forbidden ConfigMap store)",
			text: `getting manifests: rpc error: code = Internal desc = getting history: getting latest transition: configmaps "coordinator-history" is forbidden: User "system:serviceaccount:demo:coordinator" cannot get resource "configmaps" in API group "" in the namespace "demo"`,
			want: []want{{mode: apiErr, values: map[string]string{
				"grpc_code": "Internal", "call": "GetManifests",
				"message": `getting history: getting latest transition: configmaps "coordinator-history" is forbidden: User "system:serviceaccount:demo:coordinator" cannot get resource "configmaps" in API group "" in the namespace "demo"`,
			}}},
		},
		{
			name: "message with its own quotes inside a slog line",
			text: slogWrap(`getting manifests: rpc error: code = Internal desc = getting history: configmaps "coordinator-history" is forbidden`),
			want: []want{{mode: apiErr, values: map[string]string{
				"message": `getting history: configmaps "coordinator-history" is forbidden`,
			}}},
		},
		{
			name: "recover: already recovered",
			text: "Error: recovering: rpc error: code = FailedPrecondition desc = coordinator is already recovered",
			want: []want{{mode: apiErr, values: map[string]string{"grpc_code": "FailedPrecondition", "call": "Recover"}}},
		},
		{
			name: "manifest mismatch stays manifest_mismatch",
			text: "✔️ Successfully verified Coordinator CVM based on reference values from manifest\n" +
				"Error: failed to verify Coordinator manifest: active manifest does not match expected manifest",
			want: []want{{mode: string(failure.ManifestMismatch)}},
		},
		{
			name: "no manifest stays coordinator_no_manifest",
			text: "Error: getting manifests: rpc error: code = FailedPrecondition desc = no manifest configured",
			want: []want{{mode: string(failure.CoordinatorNoManifest), values: map[string]string{"grpc_code": "FailedPrecondition"}}},
		},
		{
			name: "another program's gRPC error is not the user API",
			text: "Warning  FailedCreatePodSandBox  kubelet  Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox: plugin type=\"cilium-cni\" failed",
			want: nil,
		},
		{
			name: "handshake errors are not API answers",
			text: `Error: getting manifests: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: EOF"`,
			want: []want{{mode: string(failure.LBClosedEarly)}},
		},

		// grpc-go 1.85's wording of the slow-issuer deadline (PROTOCOL.md, Corrections).
		{
			name: "deadline while waiting for connections to become ready",
			text: "Error: getting manifests: rpc error: code = DeadlineExceeded desc = context deadline exceeded while waiting for connections to become ready",
			want: []want{{mode: string(failure.IssuerTimeout), alts: []string{string(failure.UpstreamDialTimeout)}, values: map[string]string{"grpc_code": "DeadlineExceeded"}}},
		},
		{
			name: "deadline while waiting for connections to become ready, wrapped inside a word",
			text: wrapAt(jsonLog("setting manifest: rpc error: code = DeadlineExceeded desc = context deadline exceeded while waiting for connections to become ready"), 37),
			want: []want{{mode: string(failure.IssuerTimeout), alts: []string{string(failure.UpstreamDialTimeout)}}},
		},

		// 8. no route to the upstream.
		{
			name: "EHOSTUNREACH, full gRPC wrapping",
			text: `Error: getting manifests: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 10.1.2.3:1313: connect: no route to host"`,
			want: []want{{mode: unreachable, values: map[string]string{"address": "10.1.2.3:1313", "error": "no route to host", "grpc_code": "Unavailable"}}},
		},
		{
			name: "ENETUNREACH on IPv6, wrapped at 30 columns",
			text: wrapAt(setWrap2("dial tcp [2001:db8::7]:1313: connect: network is unreachable"), 30),
			want: []want{{mode: unreachable, values: map[string]string{"address": "[2001:db8::7]:1313", "error": "network is unreachable"}}},
		},
		{
			name: "no route to host without the dial, JSON log",
			text: jsonLog("forwarding to coordinator: connect: no route to host"),
			want: []want{{mode: unreachable, values: map[string]string{"address": "", "error": "no route to host"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkFindings(t, tt.text, tt.want) })
	}
}

// setWrap2 wraps a dial error the way gRPC reports it to `contrast set`.
func setWrap2(cause string) string {
	return `Error: setting manifest: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: ` + cause + `"`
}

func TestIDBlockMissingSummary(t *testing.T) {
	fs := Explain("report ID key not trusted: " + hexOf(0, 48))
	if len(fs) != 1 || !strings.Contains(fs[0].Summary, "without an ID block") {
		t.Fatalf("got %+v, want a summary naming the missing ID block", fs)
	}
	fs = Explain("report ID key not trusted: " + hexOf(0x11, 48))
	if len(fs) != 1 || strings.Contains(fs[0].Summary, "without an ID block") {
		t.Fatalf("got %+v, want no missing-ID-block summary for a real digest", fs)
	}
}

func TestPolicyHashListInMeaning(t *testing.T) {
	h1, h2, h3 := hexOf(0x4e, 32), hexOf(0x7a, 32), hexOf(0xc1, 32)
	fs := Explain("wrong policy hash for Coordinator: got " + h1 + ", want [" + h2 + " " + h3 + "]")
	if len(fs) != 1 {
		t.Fatalf("got %v", modes(fs))
	}
	for _, h := range []string{h1, h2, h3} {
		if !strings.Contains(fs[0].Meaning, h) {
			t.Errorf("meaning does not name %s: %s", h, fs[0].Meaning)
		}
	}
}

// TestNewModesByName: the new contract modes named in ccproxy's own output
// are explained like every other mode.
func TestNewModesByName(t *testing.T) {
	for _, m := range []failure.Mode{failure.UpstreamUnreachable, failure.ReferenceValueMismatch, failure.CoordinatorAPIError, failure.TunnelUnavailable} {
		for _, text := range []string{string(m), "level=WARN msg=connection ccproxy.failure_mode=" + string(m) + " upstream=coordinator:1313"} {
			fs := Explain(text)
			if len(fs) != 1 || fs[0].Mode != string(m) || !fs[0].Contract || fs[0].Meaning == "" {
				t.Errorf("%q: got %+v", text, fs)
			}
		}
	}
}
