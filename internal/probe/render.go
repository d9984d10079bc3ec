package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: the verdict first, then how
// the Coordinator was reached, its evidence and its state.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("Coordinator", "%s", r.Coordinator)
	row("Failure mode", "%s", r.Mode)
	row("Detail", "%s", r.Detail)
	fmt.Fprintln(tw)
	if len(r.Attempts) > 0 {
		d := r.decidingAttempt()
		nonce := fmt.Sprintf("%s (%s)", d.NonceStyle, shortHex(d.Nonce))
		if d.ServerName != "" {
			nonce += fmt.Sprintf(", SNI %q", d.ServerName)
		}
		row("Nonce", "%s", nonce)
		if d.Address != "" {
			row("Connected to", "%s", d.Address)
		}
	}
	if r.TLSVersion != "" {
		row("TLS", "%s", r.TLSVersion)
	}
	row("Timings", "%s", r.Timings.text())
	if r.ClockOffset != nil {
		row("Coordinator clock", "%s relative to this machine (certificate NotBefore + 2 h, whole seconds)", signed(*r.ClockOffset))
	}
	if ev := r.Evidence; ev != nil {
		line := fmt.Sprintf("%s %s", platformName(ev.Platform), ev.Verdict)
		if ev.Product != "" {
			line += ", " + ev.Product
		}
		row("Evidence", "%s", line)
		if ev.PolicyHash != "" {
			row("Policy hash", "%s", ev.PolicyHash)
		}
		if ev.ExpectedPolicyHash != "" {
			row("Expected policy hash", "%s", ev.ExpectedPolicyHash)
		}
		if ev.Mode != "" && ev.Mode != failure.OK && ev.Mode != r.Mode {
			row("Evidence result", "%s %s", ev.Mode, ev.Detail)
		}
	}
	if st := r.State; st != nil {
		switch {
		case st.Code != "":
			row("User API", "%s: %s %q", st.Service, st.Code, st.Message)
		default:
			line := fmt.Sprintf("%s, %d policies", plural(st.Manifests, "manifest"), st.Policies)
			if st.LatestManifestSHA256 != "" {
				line += ", latest sha256 " + st.LatestManifestSHA256
			}
			row("Manifests", "%s", line)
			switch {
			case !st.Compared:
				row("Manifest check", "not compared (no --manifest)")
			case len(st.Differences) == 0:
				row("Manifest check", "the latest manifest equals manifest.json")
			default:
				for i, d := range st.Differences {
					k := ""
					if i == 0 {
						k = "Differences"
					}
					fmt.Fprintf(tw, "%s\t- %s\n", pad(k), d)
				}
			}
		}
	}
	if len(r.Attempts) > 1 {
		fmt.Fprintln(tw)
		for i, a := range r.Attempts {
			k := ""
			if i == 0 {
				k = "Attempts"
			}
			fmt.Fprintf(tw, "%s\t%d. nonce in %s: %s\n", pad(k), i+1, a.NonceStyle, a.Mode)
		}
	}
	return tw.Flush()
}

func pad(k string) string {
	if k == "" {
		return ""
	}
	return k + ":"
}

// decidingAttempt is the attempt whose facts the report shows.
func (r *Report) decidingAttempt() *Attempt {
	if r.decided != nil {
		return r.decided
	}
	return r.Attempts[len(r.Attempts)-1]
}

func (t Timings) text() string {
	var parts []string
	add := func(name string, d time.Duration) {
		if d > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", name, roundDur(d)))
		}
	}
	add("DNS", t.DNS)
	add("connect", t.Connect)
	add("issuer (first byte)", t.FirstByte)
	add("handshake", t.Handshake)
	add("user API", t.UserAPI)
	if len(parts) == 0 {
		return "none measured"
	}
	return strings.Join(parts, ", ")
}

func roundDur(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func signed(d time.Duration) string {
	if d < 0 {
		return "-" + (-d).Round(time.Millisecond).String()
	}
	return "+" + d.Round(time.Millisecond).String()
}

func shortHex(h string) string {
	if len(h) <= 16 {
		return h
	}
	return h[:8] + "…" + h[len(h)-8:]
}
