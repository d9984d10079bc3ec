// Package procstat measures a process tree from /proc: resident memory
// (RSS and proportional PSS), CPU time, threads and file descriptors. A
// relay that forks per connection (socat) is the parent plus its children.
//
//	u, err := procstat.Sample(pid)
//	fmt.Printf("%d processes, %.1f MiB RSS\n", u.Procs, float64(u.RSS)/(1<<20))
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times. It is 100
// on every Linux architecture Go supports (the kernel ABI fixes it; only
// the internal HZ varies).
const clockTick = time.Second / 100

// Usage is one sample of a process tree.
type Usage struct {
	Procs   int
	Threads int
	RSS     int64 // bytes, sum of VmRSS: shared pages count once per process
	PSS     int64 // bytes, sum of Pss: shared pages split between sharers
	// RSSAnon and RSSFile split RSS (VmRSS = RssAnon + RssFile + RssShmem):
	// anonymous memory (heap, stacks) and file-backed pages (the
	// executable's code and data mapped in).
	RSSAnon, RSSFile int64
	FDs              int
	Pipes            int // of FDs, how many are pipe ends
	// CPU is user+system time of the tree's processes, plus that of
	// children they already reaped (a forking relay's finished
	// connections).
	CPU time.Duration
}

// MiB converts bytes to mebibytes.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

// Stat is the part of /proc/PID/stat the benchmark uses.
type Stat struct {
	PID, PPID      int
	Comm           string
	UTime, STime   int64 // clock ticks
	CUTime, CSTime int64 // clock ticks, reaped children
	Threads        int
}

// ParseStat parses the contents of /proc/PID/stat. The command name may
// hold spaces and parentheses, so the fields are found after the last ')'.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return Stat{}, errors.New("stat: no (comm) field")
	}
	var s Stat
	var err error
	if s.PID, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return Stat{}, fmt.Errorf("stat: pid: %w", err)
	}
	s.Comm = string(b[open+1 : closing])
	// Fields after comm, numbered as in proc(5) from 3 (state).
	f := strings.Fields(string(b[closing+1:]))
	const last = 20 // num_threads
	if len(f) < last-2 {
		return Stat{}, fmt.Errorf("stat: %d fields after comm, want at least %d", len(f), last-2)
	}
	field := func(n int) (int64, error) {
		v, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", n, err)
		}
		return v, nil
	}
	vals := make(map[int]int64, 6)
	for _, n := range []int{4, 14, 15, 16, 17, 20} {
		if vals[n], err = field(n); err != nil {
			return Stat{}, err
		}
	}
	s.PPID = int(vals[4])
	s.UTime, s.STime, s.CUTime, s.CSTime = vals[14], vals[15], vals[16], vals[17]
	s.Threads = int(vals[20])
	return s, nil
}

// kBField returns the value of a "Name:   123 kB" line in /proc status
// files, in bytes; ok is false when the line is absent.
func kBField(b []byte, name string) (int64, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	prefix := name + ":"
	for sc.Scan() {
		line := sc.Text()
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false, fmt.Errorf("%s: unexpected line %q", name, line)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %w", name, err)
		}
		return v << 10, true, nil
	}
	return 0, false, sc.Err()
}

// Tree returns root and all its descendants that are alive now.
func Tree(root int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		st, err := ParseStat(b)
		if err != nil {
			continue
		}
		children[st.PPID] = append(children[st.PPID], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// Sample measures root and its descendants. A descendant that exits while
// it is read is skipped; root must exist.
func Sample(root int) (Usage, error) {
	pids, err := Tree(root)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	for i, pid := range pids {
		p, err := sampleOne(pid)
		if err != nil {
			if i == 0 {
				return Usage{}, fmt.Errorf("process %d: %w", pid, err)
			}
			continue
		}
		u.Procs++
		u.Threads += p.Threads
		u.RSS += p.RSS
		u.PSS += p.PSS
		u.RSSAnon += p.RSSAnon
		u.RSSFile += p.RSSFile
		u.FDs += p.FDs
		u.Pipes += p.Pipes
		u.CPU += p.CPU
	}
	return u, nil
}

func sampleOne(pid int) (Usage, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Usage{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{
		Threads: st.Threads,
		CPU:     time.Duration(st.UTime+st.STime+st.CUTime+st.CSTime) * clockTick,
	}
	if b, err = os.ReadFile(filepath.Join(dir, "status")); err != nil {
		return Usage{}, err
	}
	if u.RSS, _, err = kBField(b, "VmRSS"); err != nil {
		return Usage{}, err
	}
	// RssAnon and RssFile need Linux 4.5; without them both stay 0.
	u.RSSAnon, _, _ = kBField(b, "RssAnon")
	u.RSSFile, _, _ = kBField(b, "RssFile")
	// smaps_rollup needs Linux 4.14; without it PSS stays 0.
	if b, err = os.ReadFile(filepath.Join(dir, "smaps_rollup")); err == nil {
		if u.PSS, _, err = kBField(b, "Pss"); err != nil {
			return Usage{}, err
		}
	}
	fdDir := filepath.Join(dir, "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return Usage{}, err
	}
	u.FDs = len(fds)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(target, "pipe:") {
			u.Pipes++
		}
	}
	return u, nil
}
