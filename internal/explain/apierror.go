package explain

import (
	"fmt"
	regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// After a successful handshake the CLI calls the Coordinator's user API
// (GetManifests for `contrast verify`, SetManifest for `contrast set`, Recover
// for `contrast recover`) and prints a failed call as
//
//	Error: getting manifests: rpc error: code = <Code> desc = <message>
//
// ruleUserAPI explains the messages that are known states (no manifest,
// recovery mode); ruleCoordinatorAPIError explains every other status the
// user API answered with.
var (
	apiStatusRe = pattern(`rpc error: code = ([A-Za-z]+) desc = `)
	// The CLI's wrapping of a user-API call, the call's or the service's
	// name, or a Contrast command line: the status came from the user API.
	userAPICallRe = regexp.MustCompile(`(getting manifests|GetManifests|contrast\s+verify)|(setting manifest|SetManifest|contrast\s+set)|([Rr]ecover(?:ing)?\b|contrast\s+recover)|UserAPI|userapi`)
	// Messages only the Coordinator's user API returns (coordinator's
	// userapi and stateguard packages, grpc-go for an unknown service).
	userAPIMessageRe = regexp.MustCompile(`^(?:validating peer|getting state|getting history|updating Coordinator state|unmarshaling manifest|changes to seedshare owners|coordinator is already recovered|no state to recover from|rejecting user recovery|peer not authorized|initializing seed engine|seedshare owner public key|resetting state|unknown (?:service|method)\b.*(?:UserAPI|userapi))`)
	contrastCmdRe    = regexp.MustCompile(`contrast\s+(?:verify|set|recover)\b`)
)

// maxAPIMessage bounds the message quoted from an API status.
const maxAPIMessage = 400

// ruleCoordinatorAPIError names coordinator_api_error for a user-API status
// that none of the earlier rules explained. Transport statuses (Unavailable:
// the connection or handshake failed; DeadlineExceeded, Canceled: the CLI
// gave up) are not answers of the API and stay for the connection rules.
func ruleCoordinatorAPIError(s *scanner) {
	hasCmd := contrastCmdRe.MatchString(s.text)
	s.each(apiStatusRe, func(m []int) {
		code := s.group(m, 1)
		switch code {
		case "Unavailable", "DeadlineExceeded", "Canceled", "OK":
			return
		}
		end := s.apiMessageEnd(m[1])
		if p := s.firstClaimed(m[0], end); p >= 0 {
			if p < s.lineEnd(m[1]) {
				return // a known state or another rule's error
			}
			end = p
		}
		msg := strings.TrimSpace(s.text[m[1]:end])
		ctx := s.text[max(s.lineStart(m[0]), m[0]-300):m[0]]
		call := userAPICall(ctx)
		if call == "" && !hasCmd && !userAPIMessageRe.MatchString(msg) && !userAPICallRe.MatchString(ctx) {
			return // another program's gRPC error (containerd, kubelet, ...)
		}
		s.claim(m[0], end)
		s.add(m[0], end, apiErrorFinding(s, code, msg, call))
	})
}

// userAPICall names the user-API call the CLI's wrapping in ctx points at.
func userAPICall(ctx string) string {
	ms := userAPICallRe.FindAllStringSubmatchIndex(ctx, -1)
	if len(ms) == 0 {
		return ""
	}
	m := ms[len(ms)-1] // the innermost wrapping is the nearest
	switch {
	case m[2] >= 0:
		return "GetManifests"
	case m[4] >= 0:
		return "SetManifest"
	case m[6] >= 0:
		return "Recover"
	}
	return ""
}

// apiMessageEnd is where the message of a status starting at pos ends: at
// the end of its line, or at the closing quote when the whole error was
// quoted (slog's msg="..."): the message's own quotes (configmaps "name" is
// forbidden) come in pairs, so an odd one out is the closing quote. A line
// broken at a fixed column (a terminal or mail client wrapped it: the line is
// as long as its neighbour) continues on the next.
func (s *scanner) apiMessageEnd(pos int) int {
	limit := min(len(s.text), pos+maxAPIMessage)
	end := s.lineEnd(pos)
	for end < limit {
		start := s.lineStart(end - 1)
		n := end - start
		prev := -1
		if start > 0 {
			prev = start - s.lineStart(start-1)
		}
		next := s.lineEnd(end) - end
		if n != prev && n != next {
			break
		}
		end = s.lineEnd(end)
	}
	end = min(end, limit)
	if msg := s.text[pos:end]; strings.Count(msg, `"`)%2 == 1 {
		end = pos + strings.LastIndexByte(msg, '"')
	}
	return end
}

// firstClaimed is the offset of the first claimed byte in text[start:end],
// or -1.
func (s *scanner) firstClaimed(start, end int) int {
	for i := start; i < end; i++ {
		if s.claimed[i/64]&(1<<(uint(i)%64)) != 0 {
			return i
		}
	}
	return -1
}

func apiErrorFinding(s *scanner, code, msg, call string) Finding {
	addr := s.addrOrPlaceholder()
	vs := Values{{"grpc_code", code}, {"message", msg}}
	if call != "" {
		vs = append(vs, Value{"call", call})
	}
	if a := s.coordinatorAddr(); a != "" {
		vs = append(vs, Value{"coordinator", a})
	}
	what := "the Coordinator's user API"
	if call != "" {
		what += " (" + call + ")"
	}
	f := Finding{
		Mode:    string(failure.CoordinatorAPIError),
		Summary: fmt.Sprintf("%s answered %s: %s", what, code, excerpt(msg)),
		Values:  vs,
		Meaning: fmt.Sprintf("The attested-TLS handshake succeeded — the Coordinator is genuine and matches the "+
			"reference values — but %s answered with the gRPC status %s (%q). That is neither a missing manifest "+
			"nor recovery mode, so the message itself says what went wrong.", what, code, msg),
	}
	switch code {
	case "Unimplemented":
		f.Meaning += " Unimplemented means the server does not know the call: the CLI and the Coordinator come from " +
			"different Contrast releases (older releases served the API as `userapi.UserAPI`, newer ones as " +
			"`edgelesssys.contrast.userapi.UserAPI`), or the address reaches another attested service than the user API."
		f.NextSteps = []string{
			versionStep(),
			"Use the CLI release that matches the Coordinator, and make sure the address is the Coordinator's port 1313 (not the mesh API on 7777).",
		}
	case "PermissionDenied":
		f.Meaning += " PermissionDenied means the Coordinator did not accept the caller's key: `contrast set` on a " +
			"Coordinator that already has a manifest must present a workload owner key listed in that manifest, " +
			"`contrast recover` a seed-share owner key."
		f.NextSteps = []string{
			"For `contrast set`: pass the workload owner key of the current manifest with `--workload-owner-key` (`jq '.WorkloadOwnerKeyDigests, .WorkloadOwnerPubKeys' verify/manifest.<n>.json` lists the accepted ones).",
			"For `contrast recover`: use the seed-share owner key the manifest names (`--seedshare-owner-key`).",
			"Changing the seed-share owners of a running deployment is refused by design.",
		}
	case "FailedPrecondition":
		f.Meaning += " FailedPrecondition means the Coordinator's state does not allow the call now (already " +
			"recovered, nothing to recover from, recovered peers available, or another manifest was set concurrently)."
		f.NextSteps = []string{
			"Fetch the Coordinator's current state: `contrast verify -c " + addr + "`.",
			"For a concurrent update (--atomic), fetch the latest transition with `contrast verify` and set the manifest again.",
		}
	case "InvalidArgument":
		f.Meaning += " InvalidArgument means the Coordinator could not use what was sent: a manifest it cannot " +
			"parse (made by another release) or a seed that does not fit."
		f.NextSteps = []string{
			versionStep(),
			"Regenerate the manifest with the CLI of the Coordinator's release (`contrast generate`), or for recovery check the seed and seed-share files.",
		}
	default:
		f.NextSteps = []string{
			coordinatorLogStep(),
			"Retry once the Coordinator is ready: `kubectl get pods -l app.kubernetes.io/name=coordinator` (READY 1/1).",
		}
	}
	f.NextSteps = append(f.NextSteps, fmt.Sprintf("Run `ccproxy probe --coordinator %s --manifest manifest.json`: after the handshake it asks the user API for the manifest state and names the answer.", addr))
	return f
}
