package explain

import (
	"fmt"
	regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
	"strings"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// addrPat is a dial address as Go prints it: host:port or [v6]:port.
const addrPat = `(\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._]+)?\]:[0-9]{1,5}|[^\s:"'\[\]()]+:[0-9]{1,5})`

func withAddr(p string) *regexp.Regexp { return pattern(strings.ReplaceAll(p, "ADDR", addrPat)) }

var (
	dialAddrRe = withAddr(`dial tcp[46]? ADDR:`)

	eofRe   = pattern(`authentication handshake failed: EOF`)
	resetRe = withAddr(`authentication handshake failed: read tcp[46]? \S+->ADDR: read: connection reset by peer`)
	// gRPC's wording when the connection never became usable before the
	// CLI's deadline; grpc-go 1.85 and newer print the second form.
	lbDeadlineRe    = pattern(`received context error while waiting for new LB policy update: context deadline exceeded`)
	readyDeadlineRe = pattern(`context deadline exceeded while waiting for connections to become ready`)
	internalRe      = pattern(`remote error: tls: internal error`)
	noExtRe         = pattern(`no valid attestation document certificate extensions found`)
	noValidatorRe   = pattern(`no matching validators found`)
	notTLSRe        = pattern(`first record does not look like a TLS handshake`)
	refusedRe       = withAddr(`dial tcp[46]? ADDR: connect: connection refused`)
	dnsRe           = pattern(`dial tcp[46]?: lookup ([^\s:"'\[\]]+)(?: on ([^\s"']+?))?: (?:read udp \S+: )?(no such host|server misbehaving|i/o timeout|Temporary failure in name resolution|Name or service not known)`)
	dialTimeoutRe   = withAddr(`dial tcp[46]? ADDR: (i/o timeout|connect: connection timed out|operation was canceled)`)
	dialCtxRe       = pattern(`[Ee]rror while dialing:? context deadline exceeded`)
	// EHOSTUNREACH, ENETUNREACH and EHOSTDOWN as Go's net package prints
	// them; the second form is the same error quoted without the dial.
	unreachableRe     = withAddr(`dial tcp[46]? ADDR: connect: (no route to host|network is unreachable|host is down)`)
	bareUnreachableRe = pattern(`connect: (no route to host|network is unreachable|host is down)`)
	unsupportedRe     = pattern(`proto refers to an unsupported atls version`)
	// The other TLS alerts Go names (crypto/tls alert.go).
	alertRe = pattern(`remote error: tls: (unexpected message|bad record MAC|decryption failed|record overflow|decompression failure|handshake failure|bad certificate|unsupported certificate|revoked certificate|expired certificate|unknown certificate authority|unknown certificate|illegal parameter|access denied|error decoding message|error decrypting message|export restriction|protocol version not supported|insufficient security level|inappropriate fallback|user canceled|no renegotiation|missing extension|unsupported extension|certificate unobtainable|unrecognized name|bad certificate status response|bad certificate hash value|unknown PSK identity|certificate required|no application protocol|encrypted client hello required|close notify|alert\([0-9]+\))`)

	// Evidence that the Coordinator is older than the CLI: it decoded the
	// SNI (a host name such as "localhost") as the base64 nonce.
	illegalBase64Re = pattern(`illegal base64 data at input byte ([0-9]+)`)
	handshakeCtxRe  = pattern(`handshake`)

	// A server-side handshake failure in the Coordinator's log (gRPC or
	// net/http wording).
	serverHandshakeRe = withAddr(`(?:failed to complete security handshake|TLS handshake error) from "?ADDR"?: `)

	clockRe = pattern(`certificate has expired or is not yet valid: current time ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+\-][0-9]{2}:[0-9]{2})) is (before|after) ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+\-][0-9]{2}:[0-9]{2}))`)

	noManifestRe       = pattern(`no manifests? (?:configured|set)|manifest history is empty`)
	recoveryRe         = pattern(`coordinator is in recovery mode`)
	manifestMismatchRe = pattern(`active manifest does not match expected manifest`)
)

func probeStep(s *scanner, extra string) string {
	return fmt.Sprintf("Run `ccproxy probe --coordinator %s`%s.", s.addrOrPlaceholder(), extra)
}

func coordinatorLogStep() string {
	return "Read the Coordinator's log around the time of the error: `kubectl logs -l app.kubernetes.io/name=coordinator --tail=200`."
}

func versionStep() string {
	return "Compare versions: `contrast --version` against the Coordinator's image: `kubectl get pods -l app.kubernetes.io/name=coordinator -o jsonpath='{.items[*].spec.containers[*].image}'`."
}

func ruleConnection(s *scanner) {
	simple := func(re *regexp.Regexp, mk func(m []int) Finding) {
		s.each(re, func(m []int) {
			s.claim(m[0], m[1])
			f := mk(m)
			f.Values = s.connValues(m[0], f.Values...)
			s.add(m[0], m[1], f)
		})
	}

	simple(eofRe, func([]int) Finding { return lbClosedFinding(s, "") })
	simple(resetRe, func(m []int) Finding { return lbClosedFinding(s, s.group(m, 1)) })
	deadline := func([]int) Finding {
		return Finding{
			Mode:         string(failure.IssuerTimeout),
			Alternatives: []string{string(failure.UpstreamDialTimeout)},
			Summary:      "no usable connection to the Coordinator before the CLI's deadline",
			Meaning: "gRPC waited for a finished handshake until the CLI's deadline ran out. Most often the TCP " +
				"connection stood but the Coordinator sent nothing after the ClientHello, because producing the " +
				"attestation evidence (or fetching its collateral) hung; a TCP connection that never opens " +
				"(upstream_dial_timeout) ends with the same text.",
			NextSteps: []string{
				probeStep(s, ": it tells a connection that opened but got no answer after the ClientHello (issuer_timeout) from one that never opened (upstream_dial_timeout)"),
				coordinatorLogStep() + " Look for issuer or collateral errors (SNP: certificate fetches; TDX: the quote generation service on the host).",
			},
		}
	}
	simple(lbDeadlineRe, deadline)
	simple(readyDeadlineRe, deadline)
	simple(internalRe, func(m []int) Finding { return internalErrorFinding(s, m[0]) })
	simple(noExtRe, func([]int) Finding {
		return Finding{
			Mode:    string(failure.UnexpectedCertificate),
			Summary: "the server's certificate carries no attestation document",
			Meaning: "TLS completed, but the certificate has no Contrast attestation extension (OIDs 1.3.9901.2.x). " +
				"The address reaches something other than the Coordinator's attested port 1313 — another port or " +
				"service, a load balancer or ingress that terminates TLS with its own certificate — or a Coordinator " +
				"from a release whose certificates this CLI does not understand.",
			NextSteps: []string{
				"Check that the address is the Coordinator's port 1313: `kubectl get svc coordinator -o jsonpath='{.spec.ports}'`.",
				"Make sure nothing on the way terminates TLS: the load balancer must forward TCP (pass-through).",
				probeStep(s, ": it shows the certificate's subject and extensions"),
				versionStep(),
			},
		}
	})
	simple(noValidatorRe, func([]int) Finding {
		return Finding{
			Mode:    string(failure.NoMatchingValidator),
			Summary: "the evidence is for a platform the manifest has no reference values for",
			Meaning: "The certificate carries an attestation document, but for another platform than the ones in " +
				"the manifest's reference values (for example SNP evidence while the manifest only lists TDX, or the " +
				"insecure development platform).",
			NextSteps: []string{
				"List the platforms the manifest covers: `jq '.ReferenceValues | keys' manifest.json`.",
				"Regenerate with the platform the cluster runs on: `contrast generate --reference-values <platform> ...`, then set the manifest again.",
				probeStep(s, ": it prints the evidence's platform"),
			},
		}
	})
	simple(notTLSRe, func([]int) Finding {
		return Finding{
			Mode:    string(failure.UpstreamNotTLS),
			Summary: "the server answered with something that is not TLS",
			Meaning: "The first bytes from the server are not a TLS record: the address reaches a plain-text service " +
				"(the Coordinator's HTTP port 1314, a metrics port, an HTTP proxy's error page) instead of the attested port 1313.",
			NextSteps: []string{
				"Check the port: the CLI must talk to the Coordinator's port 1313.",
				probeStep(s, ": it shows the first bytes the server sent"),
			},
		}
	})
	simple(refusedRe, func(m []int) Finding {
		addr := s.group(m, 1)
		steps := []string{
			"Check the Coordinator runs and is ready: `kubectl get pods -l app.kubernetes.io/name=coordinator` (READY 1/1).",
			"Check the service's ports: `kubectl get svc coordinator` (1313 must map to the Coordinator's 1313).",
		}
		if isLocal(addr) {
			steps = append(steps, "The address is local: is the `kubectl port-forward` (or ccproxy) that should listen on "+addr+" still running?")
		}
		steps = append(steps, fmt.Sprintf("Run `ccproxy probe --coordinator %s` once the port answers.", addr))
		return Finding{
			Mode:    string(failure.UpstreamRefused),
			Summary: "nothing listens on " + addr,
			Values:  Values{{"address", addr}},
			Meaning: "The host " + addr + " answered, but no process listens on that port: the Coordinator is not " +
				"running or not ready yet, the load balancer or port-forward points at the wrong port, or a local " +
				"forwarder is not running.",
			NextSteps: steps,
		}
	})
	simple(dnsRe, func(m []int) Finding {
		host, resolver, why := s.group(m, 1), s.group(m, 2), s.group(m, 3)
		vs := Values{{"host", host}}
		if resolver != "" {
			vs = append(vs, Value{"resolver", resolver})
		}
		vs = append(vs, Value{"error", why})
		return Finding{
			Mode:    string(failure.UpstreamDNSFailure),
			Summary: "the name " + host + " does not resolve",
			Values:  vs,
			Meaning: "The CLI could not turn " + host + " into an address (" + why + "). Names such as " +
				"coordinator.<namespace>.svc.cluster.local only resolve inside the cluster.",
			NextSteps: []string{
				"Resolve it on this machine: `getent hosts " + host + "`.",
				"From outside the cluster use the load balancer's address: `kubectl get svc coordinator -o jsonpath='{.status.loadBalancer.ingress[0].ip}'`, or a port-forward to localhost.",
			},
		}
	})
	simple(dialTimeoutRe, func(m []int) Finding { return dialTimeoutFinding(s, s.group(m, 1), s.group(m, 2)) })
	simple(dialCtxRe, func([]int) Finding { return dialTimeoutFinding(s, s.coordinatorAddr(), "context deadline exceeded") })
	simple(unreachableRe, func(m []int) Finding { return unreachableFinding(s, s.group(m, 1), s.group(m, 2)) })
	simple(bareUnreachableRe, func(m []int) Finding { return unreachableFinding(s, "", s.group(m, 1)) })
	simple(unsupportedRe, func([]int) Finding {
		return Finding{
			Mode:    string(failure.UnsupportedATLSVersion),
			Summary: "the client asked for an attested-TLS version the Coordinator does not speak",
			Meaning: "The client's ALPN entry `atls:<version>:nonce:...` names a protocol version this Coordinator " +
				"does not support, so it refuses the handshake (the client sees `remote error: tls: internal error`). " +
				"CLI and Coordinator come from different Contrast releases.",
			NextSteps: []string{versionStep(), "Use the CLI release that matches the deployed Coordinator, or upgrade the Coordinator."},
		}
	})
	// A base64 error only means a version mismatch inside a handshake error
	// of the Coordinator; elsewhere it is anybody's decoding problem.
	s.each(illegalBase64Re, func(m []int) {
		if !handshakeCtxRe.MatchString(s.text[max(0, m[0]-300):m[0]]) {
			return
		}
		s.claim(m[0], m[1])
		s.add(m[0], m[1], versionMismatchFinding(s, "", s.group(m, 1)))
	})
	simple(alertRe, func(m []int) Finding {
		alert := s.group(m, 1)
		return Finding{
			Mode:    string(failure.TLSAlert),
			Summary: "the peer ended the handshake with the TLS alert \"" + alert + "\"",
			Values:  Values{{"alert", alert}},
			Meaning: "The other side aborted the TLS handshake with the alert \"" + alert + "\". In the Coordinator's " +
				"log, \"bad certificate\" means the client rejected the Coordinator's certificate (its attestation " +
				"check failed; the client's own error says why).",
			NextSteps: []string{probeStep(s, ": it records the alert and the handshake phase it came in")},
		}
	})
}

// unreachableFinding explains a dial that failed at once because the network
// has no route to addr ("" when the text does not name it).
func unreachableFinding(s *scanner, addr, why string) Finding {
	vs := Values{}
	if addr != "" {
		vs = append(vs, Value{"address", addr})
	}
	vs = append(vs, Value{"error", why})
	target := addr
	if target == "" {
		target = s.addrOrPlaceholder()
	}
	errno := "EHOSTUNREACH"
	switch why {
	case "network is unreachable":
		errno = "ENETUNREACH"
	case "host is down":
		errno = "EHOSTDOWN"
	}
	steps := []string{
		"Check the address: `kubectl get svc coordinator -o wide` (for a LoadBalancer the EXTERNAL-IP, for a NodePort the IP of a node that still exists: `kubectl get nodes -o wide`).",
		"Check routes and VPN on this machine: `ip route get " + hostOf(target) + "`.",
	}
	if why == "network is unreachable" {
		steps = append(steps, "ENETUNREACH means this machine has no route for the address family or network at all: an IPv6 address without IPv6 connectivity, or a VPN that is not connected.")
	} else {
		steps = append(steps, "A network policy or firewall that rejects (instead of dropping) also answers with \"no route to host\": check NetworkPolicies in the Coordinator's namespace (`kubectl get networkpolicy -A`) and host firewalls.")
	}
	steps = append(steps, fmt.Sprintf("Run `ccproxy probe --coordinator %s` once the route is fixed.", target))
	return Finding{
		Mode:    string(failure.UpstreamUnreachable),
		Summary: "no route to " + unreachableWhere(addr) + " (" + why + ")",
		Values:  vs,
		Meaning: "The dial failed at once: the network reported that " + target + " cannot be reached (" + why + ", " +
			errno + "). Nothing answered on the port because no packet got there: a wrong IP, a node or load " +
			"balancer address that no longer exists, a missing route or VPN, or a network policy or firewall that " +
			"rejects the connection.",
		NextSteps: steps,
	}
}

func unreachableWhere(addr string) string {
	if addr == "" {
		return "the upstream"
	}
	return addr
}

func lbClosedFinding(s *scanner, addr string) Finding {
	vs := Values{}
	if addr != "" {
		vs = append(vs, Value{"address", addr})
	}
	return Finding{
		Mode:    string(failure.LBClosedEarly),
		Summary: "the connection was closed before the Coordinator sent its certificate",
		Values:  vs,
		Meaning: "The TLS handshake ended right after the CLI's ClientHello, before any byte from the server. The " +
			"Coordinator answers every ClientHello (with a certificate or an alert), so something in between — a " +
			"load balancer, the port-forwarder pod, kubectl port-forward, a proxy — closed or reset the connection. " +
			"The CLI retries this error, so it shows once the retries ran out.",
		NextSteps: []string{
			probeStep(s, ": it tells whether the upstream closed right after the ClientHello (lb_closed_early) or never answered"),
			"Check what is in front of the Coordinator: `kubectl get svc coordinator -o wide` and `kubectl get endpoints coordinator` (a ready Coordinator pod must be behind it).",
			"If a port-forwarder pod relays the traffic, check that it runs and was not OOM-killed: `kubectl describe pod port-forwarder-coordinator`.",
		},
	}
}

func internalErrorFinding(s *scanner, pos int) Finding {
	f := Finding{
		Mode:         string(failure.IssuerError),
		Alternatives: []string{string(failure.CoordinatorVersionMismatch)},
		Summary:      "the Coordinator aborted the handshake with a TLS internal_error alert",
		Meaning: "The Coordinator answered the ClientHello with an internal_error alert instead of its certificate. " +
			"Two causes produce exactly this text. issuer_error: the Coordinator could not produce attestation " +
			"evidence for the handshake (hardware interface, firmware or collateral problem). " +
			"coordinator_version_mismatch: a newer CLI sends its nonce only in the ALPN entry `atls:v1:nonce:...`, " +
			"while an older Coordinator reads the nonce from the SNI, cannot decode the host name there and aborts " +
			"every such handshake at once.",
		NextSteps: []string{
			fmt.Sprintf("Tell the two apart: `ccproxy probe --coordinator %s --nonce-in sni` — if the handshake succeeds with the nonce in the SNI, CLI and Coordinator versions differ (coordinator_version_mismatch); if it still fails, the Coordinator's issuer is broken (issuer_error).", s.addrOrPlaceholder()),
			versionStep(),
			coordinatorLogStep() + " `illegal base64 data` in a handshake error confirms the version mismatch; an issuer error names the failing step.",
		},
	}
	if s.hasNonceDecodeError() {
		f.Mode = string(failure.CoordinatorVersionMismatch)
		f.Alternatives = []string{string(failure.IssuerError)}
		f.Summary = "the Coordinator aborted the handshake: it is older than the CLI (its log shows it could not decode the nonce)"
	}
	return f
}

// hasNonceDecodeError reports whether the text also holds the Coordinator's
// side of a version mismatch: a base64 error inside a handshake error.
func (s *scanner) hasNonceDecodeError() bool {
	for _, m := range illegalBase64Re.FindAllStringIndex(s.text, maxMatchesPerRule) {
		if handshakeCtxRe.MatchString(s.text[max(0, m[0]-300):m[0]]) {
			return true
		}
	}
	return false
}

func versionMismatchFinding(s *scanner, from, byteIdx string) Finding {
	vs := Values{}
	if from != "" {
		vs = append(vs, Value{"client", from})
	}
	if byteIdx != "" {
		vs = append(vs, Value{"input_byte", byteIdx})
	}
	return Finding{
		Mode:    string(failure.CoordinatorVersionMismatch),
		Summary: "the Coordinator could not read the client's nonce: the client is newer than the Coordinator",
		Values:  vs,
		Meaning: "The Coordinator took the SNI as the base64 nonce and found a host name instead (base64 decoding " +
			"failed). Newer CLIs put the nonce into the ALPN entry `atls:v1:nonce:...` and leave the SNI to the " +
			"dial address; only a Coordinator from an older release ignores ALPN. Every handshake from such a client " +
			"fails at once with `remote error: tls: internal error` on the client side.",
		NextSteps: []string{
			versionStep(),
			"Use the CLI release that matches the Coordinator, or upgrade the Coordinator.",
			fmt.Sprintf("Confirm with `ccproxy probe --coordinator %s --nonce-in sni`: it succeeds when only the nonce placement differs.", s.addrOrPlaceholder()),
		},
	}
}

func dialTimeoutFinding(s *scanner, addr, why string) Finding {
	vs := Values{}
	if addr != "" {
		vs = append(vs, Value{"address", addr})
	}
	vs = append(vs, Value{"error", why})
	target := addr
	if target == "" {
		target = s.addrOrPlaceholder()
	}
	return Finding{
		Mode:    string(failure.UpstreamDialTimeout),
		Summary: "no TCP answer from " + orNone(addr) + " in time",
		Values:  vs,
		Meaning: "The TCP connection to " + target + " got no answer before the deadline (" + why + "): packets " +
			"are dropped on the way — a firewall or network security group, a wrong IP, a load balancer without " +
			"healthy backends.",
		NextSteps: []string{
			"Test the port from this machine: `nc -vz -w 5 " + hostOf(target) + " " + portOf(target) + "`.",
			"Check the load balancer's address and health: `kubectl get svc coordinator -o wide`, and firewall rules for port 1313.",
			fmt.Sprintf("Run `ccproxy probe --coordinator %s` to see whether the TCP connection opens at all.", target),
		},
	}
}

// ruleServerHandshakeLog explains handshake failures in the Coordinator's own
// log; they name the client's address.
func ruleServerHandshakeLog(s *scanner) {
	s.each(serverHandshakeRe, func(m []int) {
		from := s.group(m, 1)
		tail := s.text[m[1]:min(len(s.text), m[1]+300)]
		end := m[1]
		var f Finding
		switch {
		case strings.HasPrefix(tail, "EOF"):
			end += 3
			f = Finding{
				Mode:    ModeCoordinatorProbeEOF,
				Summary: "a client from " + from + " connected and closed without a handshake (usually a health probe)",
				Values:  Values{{"client", from}},
				Meaning: "Something opened a TCP connection to the Coordinator and closed it before sending a ClientHello. " +
					"Kubernetes readiness and liveness probes do exactly this, so such lines in the Coordinator's log are " +
					"normal and not the cause of a CLI error.",
				NextSteps: []string{
					"Ignore it when " + hostOf(from) + " is a node or kubelet address (`kubectl get nodes -o wide`).",
					"If it is the address of your load balancer or forwarder at the time of a failing CLI call, the hop in between dropped the connection: see lb_closed_early.",
				},
			}
		case illegalBase64Re.MatchString(tail[:min(len(tail), 60)]):
			b := illegalBase64Re.FindStringSubmatchIndex(tail)
			end += b[1]
			f = versionMismatchFinding(s, from, tail[b[2]:b[3]])
		case unsupportedRe.MatchString(tail[:min(len(tail), 60)]):
			b := unsupportedRe.FindStringIndex(tail)
			end += b[1]
			f = Finding{
				Mode:      string(failure.UnsupportedATLSVersion),
				Summary:   "a client from " + from + " asked for an attested-TLS version this Coordinator does not speak",
				Values:    Values{{"client", from}},
				Meaning:   "The client's ALPN entry `atls:<version>:nonce:...` names a version this Coordinator does not support: the client comes from another Contrast release.",
				NextSteps: []string{versionStep(), "Use the CLI release that matches the Coordinator."},
			}
		case strings.HasPrefix(tail, "remote error: tls: bad certificate"):
			end += len("remote error: tls: bad certificate")
			f = Finding{
				Mode:    string(failure.ClientRejectedCertificate),
				Summary: "the client at " + from + " rejected the Coordinator's certificate",
				Values:  Values{{"client", from}},
				Meaning: "The client received the Coordinator's certificate and aborted: its attestation check failed. " +
					"The Coordinator cannot know why; the client's own error names the check (paste it into `ccproxy explain`).",
				NextSteps: []string{
					fmt.Sprintf("Run `ccproxy probe --coordinator %s --manifest manifest.json` from the client's machine: it runs the same checks and names the failing one.", s.addrOrPlaceholder()),
				},
			}
		default:
			return // some other handshake error; later rules may know it
		}
		s.claim(m[0], end)
		s.add(m[0], end, f)
	})
}

func ruleClockSkew(s *scanner) {
	s.each(clockRe, func(m []int) {
		s.claim(m[0], m[1])
		now, rel, bound := s.group(m, 1), strings.ToLower(s.group(m, 2)), s.group(m, 3)
		f := clockFinding(now, rel, bound)
		f.Values = s.connValues(m[0], f.Values...)
		s.add(m[0], m[1], f)
	})
}

// certMargin is how far before and after its own clock the Coordinator makes
// each certificate valid (NotBefore = now-2h, NotAfter = now+2h).
const certMargin = 2 * time.Hour

// clockFinding computes the Coordinator's clock offset from Go's x509 text
// "current time NOW is before|after BOUND".
//
// The Coordinator issued the certificate at its own time C, so NotBefore =
// C-2h and NotAfter = C+2h, and the client checked at its time NOW, which is
// (within the handshake's latency) the same instant:
//
//	before: BOUND = NotBefore = C-2h  =>  C-NOW = (BOUND-NOW) + 2h  (ahead)
//	after:  BOUND = NotAfter  = C+2h  =>  C-NOW = (BOUND-NOW) - 2h  (behind)
func clockFinding(now, rel, bound string) Finding {
	boundName := "cert_not_before"
	if rel == "after" {
		boundName = "cert_not_after"
	}
	vs := Values{{"client_time", now}, {boundName, bound}}
	f := Finding{
		Mode: string(failure.ClockSkew),
		Meaning: "The Coordinator makes a fresh certificate for every handshake, valid from its own clock minus 2 h " +
			"to its clock plus 2 h. The CLI checks that window against this machine's clock, so when the two clocks " +
			"differ by more than 2 h every handshake fails.",
		NextSteps: []string{
			"Compare the clocks: run `date -u` on this machine and on the node that runs the Coordinator (`kubectl get pods -l app.kubernetes.io/name=coordinator -o wide` names it; `kubectl debug node/<node> -it --image=busybox -- date -u`).",
			"Check time synchronisation on the wrong side: `timedatectl status` or `chronyc tracking`; the Coordinator's VM takes its time from the host.",
		},
	}
	tNow, err1 := time.Parse(time.RFC3339, now)
	tBound, err2 := time.Parse(time.RFC3339, bound)
	if err1 != nil || err2 != nil {
		f.Values = vs
		f.Summary = "the Coordinator's certificate is not valid at this machine's time: the clocks differ by more than 2 h"
		return f
	}
	var offset time.Duration
	if rel == "before" {
		offset = tBound.Sub(tNow) + certMargin
	} else {
		offset = tBound.Sub(tNow) - certMargin
	}
	vs = append(vs,
		Value{"coordinator_clock_offset", signedDuration(offset)},
		Value{"coordinator_clock_offset_ms", fmt.Sprint(offset.Milliseconds())})
	f.Values = vs
	dir := "ahead of"
	if offset < 0 {
		dir = "behind"
	}
	f.Summary = fmt.Sprintf("the Coordinator's clock is %s %s this machine's", abs(offset), dir)
	if rel == "before" {
		f.Meaning += fmt.Sprintf(" Here this machine's time %s lies before the certificate's NotBefore %s; "+
			"NotBefore is the Coordinator's clock minus 2 h, so the Coordinator's clock was %s + 2 h = %s ahead "+
			"(to within a second and the handshake's latency).", now, bound, tBound.Sub(tNow), abs(offset))
	} else {
		f.Meaning += fmt.Sprintf(" Here this machine's time %s lies after the certificate's NotAfter %s; "+
			"NotAfter is the Coordinator's clock plus 2 h, so the Coordinator's clock was %s + 2 h = %s behind "+
			"(to within a second and the handshake's latency).", now, bound, tNow.Sub(tBound), abs(offset))
	}
	return f
}

func signedDuration(d time.Duration) string {
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func ruleUserAPI(s *scanner) {
	add := func(re *regexp.Regexp, f Finding) {
		s.each(re, func(m []int) {
			s.claim(m[0], m[1])
			g := f
			g.Values = s.connValues(m[0])
			s.add(m[0], m[1], g)
		})
	}
	addr := s.addrOrPlaceholder()
	add(noManifestRe, Finding{
		Mode:    string(failure.CoordinatorNoManifest),
		Summary: "the Coordinator has no manifest yet",
		Meaning: "Attestation succeeded and the Coordinator answered, but no manifest was ever set, so it cannot issue workload certificates; workloads wait in their init phase.",
		NextSteps: []string{
			"Set the manifest: `contrast set -c " + addr + " resources/`.",
		},
	})
	add(recoveryRe, Finding{
		Mode:    string(failure.CoordinatorRecoveryMode),
		Summary: "the Coordinator restarted and waits for recovery",
		Meaning: "The Coordinator lost its in-memory key material when it restarted and waits for an operator to provide it again; until then it issues no certificates.",
		NextSteps: []string{
			"Recover it with the secret seed and the seed-share owner key in the working directory: `contrast recover -c " + addr + "`.",
			"Afterwards restart all workloads: recovery renews the mesh CA, so old and new workloads cannot talk to each other.",
		},
	})
	add(manifestMismatchRe, Finding{
		Mode:    string(failure.ManifestMismatch),
		Summary: "the Coordinator's active manifest differs from the local manifest.json",
		Meaning: "The Coordinator is genuine and has a manifest, but the latest one it holds is not byte for byte the manifest.json the CLI was given: someone set another manifest, or the local file was regenerated.",
		NextSteps: []string{
			"Fetch what the Coordinator holds: `contrast verify -c " + addr + "` writes it to verify/manifests/; compare with `diff <(jq -S . manifest.json) <(jq -S . verify/manifests/manifest-<n>.json)`.",
			"If the local file is the intended one, set it: `contrast set -c " + addr + " resources/`.",
		},
	})
}

func isLocal(addr string) bool {
	h := hostOf(addr)
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return "1313"
}
