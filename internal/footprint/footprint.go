// Package footprint keeps ccproxy's memory inside its container: it gives
// the Go runtime a soft memory limit below the cgroup's hard one, and hands
// back the executable's pages that only startup touched.
//
//	limit, src := footprint.SetMemoryLimit(os.Getenv, os.DirFS("/")) // first thing in main
//	footprint.ReleaseStartupPages()                                   // once relay mode is set up
//
// Without a limit the runtime collects garbage only when the heap has
// doubled since the last collection, however close the container is to its
// memory.max; with one it collects harder as the heap nears it, so a storm
// of connections slows down instead of getting the pod OOM-killed.
package footprint

import (
	"bufio"
	"fmt"
	"io/fs"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// LimitFraction is the share of the cgroup's memory limit given to the Go
// runtime as its soft limit: the rest covers what the runtime does not
// count (the executable's pages, thread stacks outside the heap) and the
// kernel's per-cgroup charges.
const LimitFraction = 0.9

// unlimited: cgroup v1 reports "no limit" as the largest page-aligned
// int64 (9223372036854771712); anything this large is no limit.
const unlimited = 1 << 62

// CgroupLimit returns the memory limit of the cgroup this process runs in,
// read from fsys (the root file system: os.DirFS("/")), and the file it came
// from. With cgroup v2 it is memory.max; with v1 memory.limit_in_bytes. The
// effective limit is the smallest over the cgroup and its ancestors that
// are visible. ok is false when there is none (no cgroup, "max", or v1's
// "unlimited").
func CgroupLimit(fsys fs.FS) (limit int64, file string, ok bool) {
	b, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return 0, "", false
	}
	var v1, v2 string
	haveV1, haveV2 := false, false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	// A v1 memory controller wins over the v2 line a hybrid system also
	// lists: on such a system the memory controller is the v1 one.
	if haveV1 {
		if l, f, ok := smallest(fsys, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"); ok {
			return l, f, true
		}
	}
	if haveV2 {
		return smallest(fsys, "sys/fs/cgroup", v2, "memory.max")
	}
	return 0, "", false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallest reads name in the cgroup directory of cgPath under mount and in
// each ancestor up to the mount, and returns the smallest limit found. A
// container often sees its own cgroup as the mount's root while
// /proc/self/cgroup names the host's path: then only the mount's root is
// read.
func smallest(fsys fs.FS, mount, cgPath, name string) (limit int64, file string, ok bool) {
	dir := path.Clean("/" + cgPath)
	if _, err := fs.Stat(fsys, path.Join(mount, dir)); err != nil {
		dir = "/"
	}
	for {
		f := path.Join(mount, dir, name)
		if l, found := readLimit(fsys, f); found && (!ok || l < limit) {
			limit, file, ok = l, "/"+f, true
		}
		if dir == "/" {
			return limit, file, ok
		}
		dir = path.Dir(dir)
	}
}

func readLimit(fsys fs.FS, file string) (int64, bool) {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= unlimited {
		return 0, false
	}
	return n, true
}

// SetMemoryLimit gives the Go runtime a soft memory limit of LimitFraction
// of the cgroup's limit, unless GOMEMLIMIT is set (the runtime has applied
// that already) or there is no cgroup limit. It returns the limit now in
// force (0: none) and a phrase saying where it came from, for the log.
func SetMemoryLimit(getenv func(string) string, fsys fs.FS) (limit int64, source string) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT=" + v
	}
	cg, file, ok := CgroupLimit(fsys)
	if !ok {
		return 0, "no cgroup memory limit"
	}
	limit = int64(float64(cg) * LimitFraction)
	debug.SetMemoryLimit(limit)
	return limit, fmt.Sprintf("%.0f%% of %s (%d bytes)", LimitFraction*100, file, cg)
}
