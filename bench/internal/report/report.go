// Package report turns benchmark results into the Markdown of
// bench/RESULTS.md: the machine, a table of absolute numbers per relay, a
// table of ratios (to direct, and of ccproxy to each peer), the goals with
// met or not, notes and profiles.
//
//	res := &report.Results{Machine: report.ThisMachine(), Relays: rs}
//	os.WriteFile("bench/RESULTS.md", []byte(res.Markdown()), 0o644)
package report

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/procstat"
	"github.com/ccproxy-dev/ccproxy/bench/internal/stats"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int
	CPUModel  string
	Kernel    string
	GoVersion string
	Date      time.Time
	LoadAvg   string // /proc/loadavg at the start: other work on the machine
	FDLimit   int
}

// ThisMachine reads the machine's description from the running system.
func ThisMachine(fdLimit int) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC(), FDLimit: fdLimit}
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.CPUs = n
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Bulk is a relay's bulk-transfer result.
type Bulk struct {
	Bytes            int64
	Upload, Download time.Duration
	RelayCPU         time.Duration // over both directions; 0 for direct
}

// Rate is a relay's connection-rate result.
type Rate struct {
	PerSecond float64
	Conns     int
	Errors    int
	RelayCPU  time.Duration
}

// IdlePoint is the relay's footprint with Established idle connections
// open (Target were asked for).
type IdlePoint struct {
	Target      int
	Established int
	Usage       procstat.Usage
	Err         string // why fewer than Target were established
	Skipped     string // why the point was not measured
}

// Relay is everything measured for one relay.
type Relay struct {
	Name      string
	Bulk      []Bulk // one per round
	RTT       *stats.Summary
	Rate      []Rate // one per round
	FirstByte *stats.Summary
	Storm     []Rate      // failing connections (upstream closes after the ClientHello), one per round
	Idle      []IdlePoint // the first is the footprint before any connection
	Errors    []string    // tests that failed, with why
}

// BestBulk is the round that moved its bytes fastest (up and down
// together): on a shared machine the best round is the one least slowed by
// other work. nil without rounds.
func (r *Relay) BestBulk() *Bulk {
	var best *Bulk
	for i := range r.Bulk {
		b := &r.Bulk[i]
		if best == nil || b.Upload+b.Download < best.Upload+best.Download {
			best = b
		}
	}
	return best
}

// MedianRate is the round with the median connection rate (the lower
// middle one for an even count). nil without rounds.
func (r *Relay) MedianRate() *Rate {
	if len(r.Rate) == 0 {
		return nil
	}
	rs := slices.Clone(r.Rate)
	slices.SortFunc(rs, func(a, b Rate) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
	return &rs[(len(rs)-1)/2]
}

// MedianStorm is the storm round with the median attempt rate. nil
// without rounds.
func (r *Relay) MedianStorm() *Rate {
	if len(r.Storm) == 0 {
		return nil
	}
	rs := slices.Clone(r.Storm)
	slices.SortFunc(rs, func(a, b Rate) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
	return &rs[(len(rs)-1)/2]
}

// IdleAt returns the point measured for target, if any.
func (r *Relay) IdleAt(target int) (IdlePoint, bool) {
	for _, p := range r.Idle {
		if p.Target == target && p.Skipped == "" {
			return p, true
		}
	}
	return IdlePoint{}, false
}

// Profile is a pprof summary.
type Profile struct {
	Title string
	Text  string
}

// Results is one benchmark run.
type Results struct {
	Machine  Machine
	Settings []string // one line per size setting
	// Relays in table order; the one named "direct" is the baseline and
	// Primary the relay compared with every peer.
	Relays   []*Relay
	Primary  string
	IdleLow  int
	IdleHigh int
	Notes    []string
	Profiles []Profile
	Elapsed  time.Duration
	// Obstacles says, per row of IssueTable (keyed by IssueRow*), what
	// stands in the way of its goal and what was measured trying; shown
	// when the goal is not met.
	Obstacles map[string]string
}

func (res *Results) relay(name string) *Relay {
	for _, r := range res.Relays {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// metric is one row of the tables.
type metric struct {
	name   string
	higher bool // higher is better
	format string
	get    func(r *Relay) (float64, bool)
}

func gbits(bytes int64, d time.Duration) float64 {
	return float64(bytes) * 8 / d.Seconds() / 1e9
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (res *Results) metrics() []metric {
	ms := []metric{
		{"bulk upload, Gbit/s", true, "%.2f", func(r *Relay) (float64, bool) {
			b := r.BestBulk()
			if b == nil {
				return 0, false
			}
			return gbits(b.Bytes, b.Upload), true
		}},
		{"bulk download, Gbit/s", true, "%.2f", func(r *Relay) (float64, bool) {
			b := r.BestBulk()
			if b == nil {
				return 0, false
			}
			return gbits(b.Bytes, b.Download), true
		}},
		{"relay CPU per GiB relayed, ms", false, "%.0f", func(r *Relay) (float64, bool) {
			b := r.BestBulk()
			if b == nil || r.Name == "direct" {
				return 0, false
			}
			return float64(b.RelayCPU.Milliseconds()) / (2 * float64(b.Bytes) / (1 << 30)), true
		}},
		{"64-byte round trip p50, µs", false, "%.1f", func(r *Relay) (float64, bool) {
			if r.RTT == nil {
				return 0, false
			}
			return us(r.RTT.P50), true
		}},
		{"64-byte round trip p99, µs", false, "%.1f", func(r *Relay) (float64, bool) {
			if r.RTT == nil {
				return 0, false
			}
			return us(r.RTT.P99), true
		}},
		{"new TLS connections/s", true, "%.0f", func(r *Relay) (float64, bool) {
			rate := r.MedianRate()
			if rate == nil {
				return 0, false
			}
			return rate.PerSecond, true
		}},
		{"relay CPU per 1,000 connections, ms", false, "%.0f", func(r *Relay) (float64, bool) {
			rate := r.MedianRate()
			if rate == nil || r.Name == "direct" || rate.Conns == 0 {
				return 0, false
			}
			return float64(rate.RelayCPU.Milliseconds()) * 1000 / float64(rate.Conns), true
		}},
		{"storm: failing TLS connections/s attempted", true, "%.0f", func(r *Relay) (float64, bool) {
			st := r.MedianStorm()
			if st == nil {
				return 0, false
			}
			return st.PerSecond, true
		}},
		{"storm: relay CPU per 1,000 failing connections, ms", false, "%.0f", func(r *Relay) (float64, bool) {
			st := r.MedianStorm()
			if st == nil || st.Conns == 0 {
				return 0, false
			}
			return float64(st.RelayCPU.Milliseconds()) * 1000 / float64(st.Conns), true
		}},
		{"first byte → upstream p50, µs", false, "%.1f", func(r *Relay) (float64, bool) {
			if r.FirstByte == nil {
				return 0, false
			}
			return us(r.FirstByte.P50), true
		}},
		{"first byte → upstream p99, µs", false, "%.1f", func(r *Relay) (float64, bool) {
			if r.FirstByte == nil {
				return 0, false
			}
			return us(r.FirstByte.P99), true
		}},
	}
	for _, n := range []int{res.IdleLow, res.IdleHigh} {
		if n == 0 {
			continue
		}
		ms = append(ms,
			metric{fmt.Sprintf("RSS at %s idle connections, MiB", count(n)), false, "%.1f", func(r *Relay) (float64, bool) {
				p, ok := r.IdleAt(n)
				if !ok || p.Established < n {
					return 0, false
				}
				return procstat.MiB(p.Usage.RSS), true
			}},
			metric{fmt.Sprintf("PSS at %s idle connections, MiB", count(n)), false, "%.1f", func(r *Relay) (float64, bool) {
				p, ok := r.IdleAt(n)
				if !ok || p.Established < n || p.Usage.PSS == 0 {
					return 0, false
				}
				return procstat.MiB(p.Usage.PSS), true
			}},
		)
	}
	return ms
}

// count formats n with thousands separators.
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func cell(m metric, r *Relay) string {
	if r == nil {
		return "–"
	}
	v, ok := m.get(r)
	if !ok {
		return "–"
	}
	return fmt.Sprintf(m.format, v)
}

func ratio(m metric, a, b *Relay) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	va, oka := m.get(a)
	vb, okb := m.get(b)
	if !oka || !okb || vb == 0 {
		return 0, false
	}
	return va / vb, true
}

func ratioCell(m metric, a, b *Relay) string {
	v, ok := ratio(m, a, b)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// Table is the absolute numbers as a Markdown table.
func (res *Results) Table() string {
	var b strings.Builder
	b.WriteString("| metric |")
	for _, r := range res.Relays {
		fmt.Fprintf(&b, " %s |", r.Name)
	}
	b.WriteString("\n|---|")
	for range res.Relays {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, m := range res.metrics() {
		fmt.Fprintf(&b, "| %s |", m.name)
		for _, r := range res.Relays {
			fmt.Fprintf(&b, " %s |", cell(m, r))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// RatioTable is each relay over direct, then the primary over each peer.
func (res *Results) RatioTable() string {
	direct := res.relay("direct")
	primary := res.relay(res.Primary)
	type col struct {
		title string
		a, b  *Relay
	}
	var cols []col
	for _, r := range res.Relays {
		if r != direct && direct != nil {
			cols = append(cols, col{r.Name + " ÷ direct", r, direct})
		}
	}
	for _, r := range res.Relays {
		if r != direct && r != primary && primary != nil {
			cols = append(cols, col{res.Primary + " ÷ " + r.Name, primary, r})
		}
	}
	var b strings.Builder
	b.WriteString("| metric |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", c.title)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, m := range res.metrics() {
		fmt.Fprintf(&b, "| %s |", m.name)
		for _, c := range cols {
			fmt.Fprintf(&b, " %s |", ratioCell(m, c.a, c.b))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// The rows of IssueTable, as keys of Results.Obstacles.
const (
	IssueRowIdle     = "idle"
	IssueRowIdleHigh = "idle-high"
	IssueRowRTT      = "rtt"
	IssueRowRate     = "rate"
	IssueRowBulk     = "bulk"
	IssueRowStorm    = "storm"
)

// issueIdle is the idle count of the issue's first memory row; its second
// is the run's largest (IdleHigh).
const issueIdle = 1000

// IssueTable is issue 25's table (issue 19's rows with issue 25's goals,
// and issue 23's storm row), measured in this run: the relay's RSS holding
// 1,000 and ~10,000 idle relayed connections, the p50 round trip a relay
// adds over direct, new TLS connections per second and bulk throughput as
// a share of direct, and a storm of failing connections, for direct,
// HAProxy, the plain Go io.Copy relay and ccproxy, with each goal and
// whether ccproxy met it. The memory and storm rows are ccproxy with
// tracing on (ccproxy-traced), as the issues ask; the other rows are
// ccproxy with its defaults (tracing off).
func (res *Results) IssueTable() string {
	direct, ha, gc, cc := res.relay("direct"), res.relay("haproxy"), res.relay("gocopy"), res.relay("ccproxy")
	ccTr := res.relay("ccproxy-traced")
	trName := "ccproxy-traced"
	if ccTr == nil {
		ccTr, trName = cc, "ccproxy"
	}
	combined := func(r *Relay) (float64, bool) {
		if r == nil {
			return 0, false
		}
		b := r.BestBulk()
		if b == nil {
			return 0, false
		}
		return float64(2*b.Bytes) * 8 / (b.Upload + b.Download).Seconds() / 1e9, true
	}
	share := func(get func(*Relay) (float64, bool), r *Relay) (float64, bool) {
		v, ok := get(r)
		d, okd := get(direct)
		if !ok || !okd || d == 0 {
			return 0, false
		}
		return v / d, true
	}
	rate := func(r *Relay) (float64, bool) {
		if r == nil || r.MedianRate() == nil {
			return 0, false
		}
		return r.MedianRate().PerSecond, true
	}
	added := func(r *Relay) (float64, bool) {
		if r == nil || direct == nil || r.RTT == nil || direct.RTT == nil {
			return 0, false
		}
		return us(r.RTT.P50 - direct.RTT.P50), true
	}
	rss := func(r *Relay, n int) (float64, IdlePoint, bool) {
		if r == nil || n == 0 {
			return 0, IdlePoint{}, false
		}
		p, ok := r.IdleAt(n)
		if !ok || p.Established < n {
			return 0, p, false
		}
		return procstat.MiB(p.Usage.RSS), p, true
	}
	f2 := func(v float64, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.2f", v)
	}
	type row struct {
		key, name                  string
		direct, ha, gc, cc, target string
		met, known                 bool
	}
	var rows []row

	mem := func(r *Relay, n int) string {
		v, _, ok := rss(r, n)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f MiB", v)
	}
	ccMem := func(n int) (string, float64, bool) {
		v, p, ok := rss(ccTr, n)
		if !ok {
			return "–", 0, false
		}
		s := fmt.Sprintf("%.1f MiB (%s; anon %.1f + file %.1f", v, trName, procstat.MiB(p.Usage.RSSAnon), procstat.MiB(p.Usage.RSSFile))
		if len(ccTr.Idle) > 0 && ccTr.Idle[0].Target == 0 {
			s += fmt.Sprintf("; %.1f MiB with none", procstat.MiB(ccTr.Idle[0].Usage.RSS))
		}
		return s + ")", v, true
	}
	m := row{key: IssueRowIdle, name: fmt.Sprintf("RSS, %s idle relayed connections, tracing on", count(issueIdle)), target: "≤ 24 MiB"}
	m.ha, m.gc = mem(ha, issueIdle), mem(gc, issueIdle)
	var v float64
	m.cc, v, m.known = ccMem(issueIdle)
	m.met = m.known && v <= 24
	rows = append(rows, m)

	if hi := res.IdleHigh; hi > 0 {
		h := row{key: IssueRowIdleHigh, name: fmt.Sprintf("RSS, %s idle relayed connections, tracing on", count(hi)), target: "≤ 60 MiB and ≤ HAProxy × 1.2"}
		h.ha, h.gc = mem(ha, hi), mem(gc, hi)
		h.cc, v, h.known = ccMem(hi)
		vh, _, okh := rss(ha, hi)
		h.known = h.known && okh
		h.met = h.known && v <= 60 && v <= 1.2*vh
		rows = append(rows, h)
	}

	us1 := func(v float64, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%+.0f µs", v)
	}
	r := row{key: IssueRowRTT, name: "added p50 round trip over direct (64 bytes)", target: "≤ HAProxy's"}
	if direct != nil && direct.RTT != nil {
		r.direct = fmt.Sprintf("0 (%.0f µs)", us(direct.RTT.P50))
	}
	r.ha, r.gc = us1(added(ha)), us1(added(gc))
	vc, okc := added(cc)
	vh, okh := added(ha)
	r.cc = us1(vc, okc)
	r.known, r.met = okc && okh, okc && okh && vc <= vh
	rows = append(rows, r)

	c := row{key: IssueRowRate, name: "new TLS connections/s (share of direct)", direct: "1.00", target: "≥ HAProxy's"}
	if v, ok := rate(direct); ok {
		c.direct = fmt.Sprintf("1.00 (%.0f/s)", v)
	}
	c.ha, c.gc = f2(share(rate, ha)), f2(share(rate, gc))
	sc, oksc := share(rate, cc)
	sh, oksh := share(rate, ha)
	c.cc = f2(sc, oksc)
	c.known, c.met = oksc && oksh, oksc && oksh && sc >= sh
	rows = append(rows, c)

	b := row{key: IssueRowBulk, name: "bulk throughput (up and down, share of direct)", direct: "1.00", target: "≥ 1.3 × HAProxy's"}
	b.ha, b.gc = f2(share(combined, ha)), f2(share(combined, gc))
	bc, okbc := share(combined, cc)
	bh, okbh := share(combined, ha)
	b.cc = f2(bc, okbc)
	b.known, b.met = okbc && okbh, okbc && okbh && bc >= 1.3*bh
	rows = append(rows, b)

	storm := func(r *Relay) (*Rate, string) {
		if r == nil || r.MedianStorm() == nil {
			return nil, "–"
		}
		st := r.MedianStorm()
		cpu := "–"
		if st.Conns > 0 {
			cpu = fmt.Sprintf("%.0f ms", float64(st.RelayCPU.Milliseconds())*1000/float64(st.Conns))
		}
		return st, fmt.Sprintf("%.0f/s, CPU %s per 1,000", st.PerSecond, cpu)
	}
	st := row{key: IssueRowStorm, name: "storm: failing TLS connections/s attempted (upstream closes after the ClientHello), relay CPU per 1,000, tracing on", target: "≥ HAProxy's rate"}
	_, st.ha = storm(ha)
	_, st.gc = storm(gc)
	stc, ccs := storm(ccTr)
	if stc != nil {
		ccs += " (" + trName + ")"
	}
	st.cc = ccs
	sth, _ := storm(ha)
	st.known = stc != nil && sth != nil
	st.met = st.known && stc.PerSecond >= sth.PerSecond
	rows = append(rows, st)

	var out strings.Builder
	out.WriteString("| measure | direct | HAProxy | plain Go io.Copy relay | ccproxy | goal | met | what stands in the way |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, x := range rows {
		met := "not measured"
		if x.known {
			met = map[bool]string{true: "yes", false: "**no**"}[x.met]
		}
		why := "–"
		if x.known && !x.met && res.Obstacles[x.key] != "" {
			why = res.Obstacles[x.key]
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", x.name, orDash(x.direct), orDash(x.ha), orDash(x.gc), orDash(x.cc), x.target, met, why)
	}
	return out.String()
}

// Goal is one target of issue 9 and whether the run met it.
type Goal struct {
	Name     string
	Target   string
	Measured string
	Met      bool
	Known    bool // false when the run could not measure it
}

// Goals evaluates the issue's targets for the primary relay.
func (res *Results) Goals() []Goal {
	p := res.relay(res.Primary)
	direct := res.relay("direct")
	ms := res.metrics()
	up, down := ms[0], ms[1]
	var goals []Goal
	throughput := func(peer *Relay, want float64, name string) {
		g := Goal{Name: "throughput vs " + name, Target: fmt.Sprintf("≥ %.1f× %s (each direction)", want, name)}
		ru, oku := ratio(up, p, peer)
		rd, okd := ratio(down, p, peer)
		if oku && okd {
			g.Known = true
			g.Measured = fmt.Sprintf("upload %.2f×, download %.2f×", ru, rd)
			g.Met = ru >= want && rd >= want
		}
		goals = append(goals, g)
	}
	throughput(direct, 0.8, "direct")
	throughput(res.relay("haproxy"), 1.0, "HAProxy")
	throughput(res.relay("socat"), 2.0, "socat")

	g := Goal{Name: "added round-trip latency", Target: "p50 ≤ 30 µs over direct"}
	if p != nil && direct != nil && p.RTT != nil && direct.RTT != nil {
		added := us(p.RTT.P50 - direct.RTT.P50)
		g.Known, g.Met = true, added <= 30
		g.Measured = fmt.Sprintf("+%.1f µs (%.1f vs %.1f)", added, us(p.RTT.P50), us(direct.RTT.P50))
	}
	goals = append(goals, g)

	for _, t := range []struct {
		n     int
		limit float64
	}{{res.IdleLow, 50}, {res.IdleHigh, 200}} {
		if t.n == 0 {
			continue
		}
		g := Goal{Name: fmt.Sprintf("memory at %s idle connections", count(t.n)), Target: fmt.Sprintf("RSS ≤ %.0f MiB", t.limit)}
		if p != nil {
			if pt, ok := p.IdleAt(t.n); ok {
				g.Known = true
				g.Met = pt.Established >= t.n && procstat.MiB(pt.Usage.RSS) <= t.limit
				g.Measured = fmt.Sprintf("%.1f MiB", procstat.MiB(pt.Usage.RSS))
				if pt.Established < t.n {
					g.Measured = fmt.Sprintf("only %s of %s connections established (%.1f MiB): %s", count(pt.Established), count(t.n), procstat.MiB(pt.Usage.RSS), pt.Err)
				}
			}
		}
		goals = append(goals, g)
	}
	return goals
}

// GoalTable renders Goals.
func (res *Results) GoalTable() string {
	var b strings.Builder
	b.WriteString("| goal | target | measured (" + res.Primary + ") | met |\n|---|---|---|---|\n")
	for _, g := range res.Goals() {
		met := "not measured"
		if g.Known {
			met = map[bool]string{true: "yes", false: "**no**"}[g.Met]
		}
		measured := g.Measured
		if measured == "" {
			measured = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Target, measured, met)
	}
	return b.String()
}

// IdleTable details the idle-connection footprints: processes, threads,
// descriptors and pipes besides memory.
func (res *Results) IdleTable() string {
	var b strings.Builder
	b.WriteString("| relay | asked | established | processes | threads | fds | of which pipes | fds per conn | RSS MiB | of which anon / file | PSS MiB | RSS KiB per conn (over 0) | note |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range res.Relays {
		for _, p := range r.Idle {
			if p.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | – | – | – | – | – | – | – | – | – | – | %s |\n", r.Name, count(p.Target), p.Skipped)
				continue
			}
			// The slope from the relay's footprint with no connection.
			perConn, fdsPerConn := "–", "–"
			if p.Established > 0 && r.Idle[0].Target == 0 {
				base := r.Idle[0].Usage
				perConn = fmt.Sprintf("%.1f", float64(p.Usage.RSS-base.RSS)/1024/float64(p.Established))
				fdsPerConn = fmt.Sprintf("%.1f", float64(p.Usage.FDs-base.FDs)/float64(p.Established))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %s | %.1f | %.1f / %.1f | %.1f | %s | %s |\n",
				r.Name, count(p.Target), count(p.Established), p.Usage.Procs, p.Usage.Threads, p.Usage.FDs, p.Usage.Pipes,
				fdsPerConn, procstat.MiB(p.Usage.RSS), procstat.MiB(p.Usage.RSSAnon), procstat.MiB(p.Usage.RSSFile), procstat.MiB(p.Usage.PSS), perConn, p.Err)
		}
	}
	return b.String()
}

// RoundsTable lists every round of the repeated tests, to show how much
// the shared machine moved the numbers.
func (res *Results) RoundsTable() string {
	var b strings.Builder
	b.WriteString("| relay | bulk rounds: upload / download, Gbit/s | connection-rate rounds, conn/s |\n|---|---|---|\n")
	for _, r := range res.Relays {
		var bulk, rate []string
		for _, x := range r.Bulk {
			bulk = append(bulk, fmt.Sprintf("%.2f / %.2f", gbits(x.Bytes, x.Upload), gbits(x.Bytes, x.Download)))
		}
		for _, x := range r.Rate {
			s := fmt.Sprintf("%.0f", x.PerSecond)
			if x.Errors > 0 {
				s += fmt.Sprintf(" (%d failed)", x.Errors)
			}
			rate = append(rate, s)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.Name, orDash(strings.Join(bulk, "; ")), orDash(strings.Join(rate, "; ")))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// Markdown is the whole RESULTS.md.
func (res *Results) Markdown() string {
	var b strings.Builder
	m := res.Machine
	b.WriteString("# ccproxy benchmark results\n\n")
	b.WriteString("Written by `make bench` (bench/run.sh → bench/cmd/ccbench). Every number is from one run on 127.0.0.1.\n\n")
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- CPUs (`nproc`): %d — %s\n", m.CPUs, m.CPUModel)
	fmt.Fprintf(&b, "- kernel %s, %s\n", m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "- date %s, run took %s\n", m.Date.Format("2006-01-02 15:04 MST"), res.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- load average at start: %s (the machine is shared; other work competes for the CPUs)\n", m.LoadAvg)
	fmt.Fprintf(&b, "- open-file limit (hard): %d per process\n\n", m.FDLimit)
	if len(res.Settings) > 0 {
		b.WriteString("## Settings\n\n")
		for _, s := range res.Settings {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	if res.relay("direct") != nil && res.relay("ccproxy") != nil {
		b.WriteString("## Issue 25: direct, HAProxy, a plain Go relay and ccproxy side by side\n\n")
		b.WriteString("Ratios from this run only (absolute numbers move from machine to machine). ccproxy's memory and storm rows are with tracing on (`--trace-file`); its other rows are its defaults.\n\n")
		b.WriteString(res.IssueTable())
		b.WriteString("\n")
	}
	b.WriteString("## Results\n\n")
	b.WriteString(res.Table())
	b.WriteString("\n## Ratios\n\nFor rates (Gbit/s, connections/s) higher is better; for times, CPU and memory lower is better.\n\n")
	b.WriteString(res.RatioTable())
	b.WriteString("\n## Goals (issue 9)\n\n")
	b.WriteString(res.GoalTable())
	b.WriteString("\n## Idle connections in detail\n\n")
	b.WriteString(res.IdleTable())
	b.WriteString("\n## Every round\n\nThe tables show the best bulk round and the median connection-rate round.\n\n")
	b.WriteString(res.RoundsTable())
	var errs []string
	for _, r := range res.Relays {
		for _, e := range r.Errors {
			errs = append(errs, r.Name+": "+e)
		}
	}
	if len(errs) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, e := range errs {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if len(res.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(res.Profiles) > 0 {
		b.WriteString("\n## Profiles (bench/cmd/ccrelay: ccproxy's relay in process)\n")
		for _, p := range res.Profiles {
			fmt.Fprintf(&b, "\n### %s\n\n```\n%s\n```\n", p.Title, strings.TrimRight(p.Text, "\n"))
		}
	}
	return b.String()
}
