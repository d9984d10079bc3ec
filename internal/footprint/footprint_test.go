package footprint

import (
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

const mi50 = "52428800\n" // the in-cluster pod's 50Mi

func files(kv ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return m
}

// TestCgroupLimit reads fake cgroup files as Kubernetes, Docker and this
// machine lay them out.
func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fs    fstest.MapFS
		want  int64
		file  string
		found bool
	}{
		{"v2, own cgroup as the root (cgroup namespace)", files(
			"proc/self/cgroup", "0::/\n",
			"sys/fs/cgroup/memory.max", mi50),
			50 << 20, "/sys/fs/cgroup/memory.max", true},
		{"v2, the pod's limit on a parent is smaller", files(
			"proc/self/cgroup", "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max", "104857600\n",
			"sys/fs/cgroup/kubepods/memory.max", "max\n"),
			100 << 20, "/sys/fs/cgroup/kubepods/pod1/memory.max", true},
		{"v2, the container's limit below the pod's", files(
			"proc/self/cgroup", "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max", mi50,
			"sys/fs/cgroup/kubepods/pod1/memory.max", "104857600\n"),
			50 << 20, "/sys/fs/cgroup/kubepods/pod1/ctr/memory.max", true},
		{"v2 without a limit", files(
			"proc/self/cgroup", "0::/user.slice\n",
			"sys/fs/cgroup/user.slice/memory.max", "max\n"),
			0, "", false},
		{"v1 (Docker)", files(
			"proc/self/cgroup", "12:pids:/docker/abc\n4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", mi50),
			50 << 20, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", true},
		{"v1, host path not visible: the mount's root is the container's", files(
			"proc/self/cgroup", "4:memory:/process_api/9f88\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes", mi50),
			50 << 20, "/sys/fs/cgroup/memory/memory.limit_in_bytes", true},
		{"v1 unlimited (the largest page-aligned int64)", files(
			"proc/self/cgroup", "4:memory:/\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"),
			0, "", false},
		{"hybrid: v1 memory controller and a v2 line", files(
			"proc/self/cgroup", "4:memory:/\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes", mi50,
			"sys/fs/cgroup/memory.max", "max\n"),
			50 << 20, "/sys/fs/cgroup/memory/memory.limit_in_bytes", true},
		{"garbage in the file", files(
			"proc/self/cgroup", "0::/\n",
			"sys/fs/cgroup/memory.max", "fifty megabytes\n"),
			0, "", false},
		{"no /proc/self/cgroup", files(), 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, file, ok := CgroupLimit(tc.fs)
			if got != tc.want || file != tc.file || ok != tc.found {
				t.Errorf("CgroupLimit = %d, %q, %v; want %d, %q, %v", got, file, ok, tc.want, tc.file, tc.found)
			}
		})
	}
}

// TestSetMemoryLimit: 90% of the cgroup's limit, unless GOMEMLIMIT is set.
func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(math.MaxInt64)
	fsys := files("proc/self/cgroup", "0::/\n", "sys/fs/cgroup/memory.max", mi50)

	limit, src := SetMemoryLimit(func(string) string { return "" }, fsys)
	want := int64(float64(50<<20) * 0.9)
	if limit != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("limit %d (runtime: %d), want %d", limit, debug.SetMemoryLimit(-1), want)
	}
	if !strings.Contains(src, "90% of /sys/fs/cgroup/memory.max") {
		t.Errorf("source %q", src)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "30MiB"
		}
		return ""
	}
	if _, src := SetMemoryLimit(env, fsys); src != "GOMEMLIMIT=30MiB" || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: source %q, runtime limit %d; want it left to the runtime", src, debug.SetMemoryLimit(-1))
	}

	if limit, _ := SetMemoryLimit(func(string) string { return "" }, files()); limit != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("without a cgroup limit: %d, runtime %d", limit, debug.SetMemoryLimit(-1))
	}
}

// TestReleaseStartupPages: the executable's read-only mappings are advised
// away and the process runs on (its code faults back in).
func TestReleaseStartupPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if n := ReleaseStartupPages(); n == 0 {
		t.Fatal("nothing released")
	}
	// Code and read-only data still work after the drop.
	if s := strings.Repeat("ok", 2); s != "okok" {
		t.Fatal(s)
	}
	if n := ReleaseStartupPages(); n == 0 {
		t.Fatal("second release found nothing")
	}
}
