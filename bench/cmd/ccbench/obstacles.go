package main

import "github.com/ccproxy-dev/ccproxy/bench/internal/report"

// obstacles is what stands in the way of each of issue 19's goals that a
// run may miss, and what was measured trying (the commits named did the
// work; their messages hold the before/after numbers). The report shows a
// row's text only when this run missed its goal.
var obstacles = map[string]string{
	report.IssueRowBulk: "No relay gets near direct on loopback: relayed bytes cross two TCP connections, so the kernel does the copy work twice on the same 2 CPUs the client and upstream use; HAProxy (splice) and the plain Go relay (io.Copy = splice) miss it as well. ccproxy's relay CPU per GiB is the plain Go relay's (same splice path for streams); nothing in its copy loop is left to cut for this row.",
	report.IssueRowRTT:  "Measured with strace over 5,000 round trips: ccproxy's post-handshake path made 6.2 system calls per hop (SIOCINQ, MSG_PEEK, splice in and out); it now makes 4.2 (read, write, and the read that finds nothing before a wait), the same as the plain Go relay. A goroutine relay cannot go lower: Go's poller forgets readiness when a wait is prepared, so it must try a read first, and every message wakes a goroutine through the scheduler. HAProxy's event loop does epoll_wait, recv, send on one thread. The next step is an epoll loop on a locked OS thread (golang.org/x/sys/unix) for connections past their handshake; not built yet. On this shared machine the p50 also moves by tens of µs from run to run.",
	report.IssueRowRate: "ccproxy spends more CPU per new connection than HAProxy or the plain Go relay (relay CPU per 1,000 connections in the table below), and on 2 shared CPUs that CPU comes out of the TLS client's and server's. The extra is the inspection and the watcher: parsing the handshake, the classifier, the root span and its events, a log line per connection, and four goroutines (accept handler with the dial, two copy loops, and a fresh small-stack one per direction after the handshake). Tried: pooled inspection buffers (36 KiB less garbage per connection), span events kept compact until the close.",
	report.IssueRowIdle: "Per connection ccproxy keeps two goroutines (2 KiB stacks each: 4 MiB at 1,000), the watcher's state and the open root span (about 5 KiB of live heap with tracing on), plus the collector's headroom over that; HAProxy keeps ~3 KiB in one event loop. Measured and done: the startup pages of every linked package handed back once serving (idle RSS 23.0 → 9.1 MiB), span events kept as 48-byte records until the close (live heap at 1,000 idle: 8.0 → 5.2 MiB), parsers dropped after the handshake, pooled inspection buffers. What is left needs fewer goroutines per idle connection: the same epoll loop the round-trip row needs.",
}
