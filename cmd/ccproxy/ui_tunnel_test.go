package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/live"
)

// pageState polls a live page's /api/v1/state until ok accepts it.
func pageState(t *testing.T, addr, what string, ok func(live.State) bool) live.State {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st live.State
		resp, err := http.Get("http://" + addr + "/api/v1/state")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s (last state %+v, err %v)", what, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasConn(st live.State, mode failure.Mode) bool {
	for _, c := range st.Connections {
		if c.Mode == string(mode) {
			return true
		}
	}
	return false
}

// TestLivePageTunnelEnds: `tunnel serve` and `tunnel connect` serve the
// page too (spans recorded for it without a trace file): both ends show
// the connection the in-cluster relay named, each with its listeners.
func TestLivePageTunnelEnds(t *testing.T) {
	laptop, laptopFP := tunnelKeys(t, "laptop")
	cluster, clusterFP := tunnelKeys(t, "cluster")
	refused := "127.0.0.1:" + freePort(t) // closed
	quicAddr := freeUDPAddr(t)
	serveUI, connectUI := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	serve := startTunnelProcess(t, append(cluster, "serve", "--quic-listen", quicAddr, "--upstream", refused,
		"--probe=false", "--peer-fingerprint", laptopFP, "--ui-listen", serveUI)...)
	serve.logLine(t, "serving", func(m map[string]any) bool { return m["msg"] == "tunnel serving" })
	listen := "127.0.0.1:" + freePort(t)
	connect := startTunnelProcess(t, append(laptop, "connect", "--server", quicAddr, "--listen", listen,
		"--peer-fingerprint", clusterFP, "--ui-listen", connectUI)...)
	connect.logLine(t, "the tunnel", func(m map[string]any) bool { return m["msg"] == "tunnel up" })

	failedExchange(t, listen)
	st := pageState(t, connectUI, "the laptop's page shows the upstream_refused connection", func(st live.State) bool { return hasConn(st, failure.UpstreamRefused) })
	if st.Mode != "tunnel connect" || len(st.Listeners) != 1 || st.Listeners[0].Listen != listen || !strings.Contains(st.Listeners[0].Upstream, "default") {
		t.Errorf("the laptop's page: mode %q, listeners %+v", st.Mode, st.Listeners)
	}
	if st.Chart.Source != "spans" {
		t.Errorf("the laptop's chart counts from %q: it has no metrics, want spans", st.Chart.Source)
	}
	st = pageState(t, serveUI, "the cluster's page shows the upstream_refused connection", func(st live.State) bool { return hasConn(st, failure.UpstreamRefused) })
	if st.Mode != "tunnel serve" || len(st.Listeners) != 1 || st.Listeners[0].Upstream != refused || st.Chart.Source != "metrics" {
		t.Errorf("the cluster's page: mode %q, listeners %+v, chart from %q", st.Mode, st.Listeners, st.Chart.Source)
	}
	// Each end draws its connection's waterfall; the in-cluster end's
	// connection span has a parent in the laptop's trace.
	for _, page := range []string{connectUI, serveUI} {
		st := pageState(t, page, "the connection", func(st live.State) bool { return len(st.Connections) > 0 })
		resp, err := http.Get("http://" + page + "/trace/" + st.Connections[0].TraceID)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `class="op">ccproxy.connection<`) {
			t.Errorf("%s: the waterfall of %s: status %d", page, st.Connections[0].TraceID, resp.StatusCode)
		}
	}
	connect.stop(t)
	serve.stop(t)
}

// TestUIListenBadValue: a bad --ui-listen is a usage error naming the flag,
// key and variable, in every command that has it.
func TestUIListenBadValue(t *testing.T) {
	laptop, _ := tunnelKeys(t, "laptop")
	_, fp := tunnelKeys(t, "cluster")
	cases := []struct {
		name string
		args []string
	}{
		{"relay", []string{"--upstream", "c:1313", "--ui-listen", "nonsense"}},
		{"tunnel serve", append(append([]string{"tunnel", "serve"}, laptop...), "--upstream", "c:1313", "--peer-fingerprint", fp, "--ui-listen", "nonsense")},
		{"tunnel connect", append(append([]string{"tunnel", "connect"}, laptop...), "--server", "s:4433", "--peer-fingerprint", fp, "--ui-listen", "nonsense")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := run(t, nil, c.args...)
			if code != 2 || !strings.Contains(stderr, "--ui-listen") || !strings.Contains(stderr, "CCPROXY_UI_LISTEN") {
				t.Errorf("exit %d, stderr %q: want 2 naming --ui-listen and CCPROXY_UI_LISTEN", code, stderr)
			}
		})
	}
}
