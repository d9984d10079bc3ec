package footprint

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseStartupPages drops this process's mappings of its own executable's
// read-only segments (code, read-only data) with madvise(MADV_DONTNEED),
// and returns how many bytes of address space it advised.
//
// The package initializers of every package linked into ccproxy run at
// startup, also those relay mode never uses (QUIC, gRPC, the probe, explain,
// HTML templates, embedded roots): each touches its code and data, and the
// kernel maps the pages around every fault, so before the first connection
// about 17 MiB of the executable count in the relay's RSS. Those pages are
// clean and still in the page cache: dropping the mappings costs nothing but
// a minor fault when code runs again, and afterwards only what the relay
// actually executes is resident. Writable segments (initialized data) are
// left alone: MADV_DONTNEED would throw away their contents.
func ReleaseStartupPages() uintptr {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var released uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode pathname
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe || len(fs[1]) < 4 || fs[1][1] == 'w' || fs[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno == 0 {
			released += uintptr(end - start)
		}
	}
	return released
}
