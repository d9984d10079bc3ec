package procstat

import (
	"os"
	"strings"
	"testing"
)

// A real /proc/PID/stat line, with a command name that has a space and
// parentheses of its own.
const statLine = "4242 (sock (x) y) S 4000 4242 4000 0 -1 4194560 1433 0 0 0 250 75 3 2 20 0 7 0 12345 123456789 2345 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte(statLine))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 4000, Comm: "sock (x) y", UTime: 250, STime: 75, CUTime: 3, CSTime: 2, Threads: 7}
	if s != want {
		t.Errorf("ParseStat = %+v, want %+v", s, want)
	}
}

func TestParseStatRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":      "",
		"no comm":    "1 S 0",
		"bad pid":    "x (a) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0",
		"too short":  "1 (a) S 1 1",
		"bad number": "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 1 0 0 20 0 1 0",
	} {
		if _, err := ParseStat([]byte(in)); err == nil {
			t.Errorf("%s: ParseStat(%q) succeeded", name, in)
		}
	}
}

func TestKBField(t *testing.T) {
	status := "Name:\tx\nVmRSS:\t   1234 kB\nPss_Anon:  9 kB\nPss:    10 kB\n"
	tests := []struct {
		name    string
		want    int64
		found   bool
		wantErr bool
	}{
		{"VmRSS", 1234 << 10, true, false},
		{"Pss", 10 << 10, true, false},
		{"VmSwap", 0, false, false},
		{"Name", 0, false, true},
	}
	for _, tt := range tests {
		v, found, err := kBField([]byte(status), tt.name)
		if (err != nil) != tt.wantErr || v != tt.want || found != tt.found {
			t.Errorf("kBField(%s) = %d, %v, %v; want %d, %v, error %v", tt.name, v, found, err, tt.want, tt.found, tt.wantErr)
		}
	}
}

func TestSampleSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	u, err := Sample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs < 1 || u.RSS <= 0 || u.Threads < 1 || u.FDs < 2 || u.Pipes < 2 {
		t.Errorf("Sample(self) = %+v: want a process with memory, threads and the two pipe ends opened here", u)
	}
	if _, err := Sample(1 << 30); err == nil || !strings.Contains(err.Error(), "process") {
		t.Errorf("Sample(no such pid): err %v", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine))
	f.Add([]byte("1 () R 0"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err != nil {
			return
		}
		// The command name is what stood between the first '(' and the
		// last ')'.
		if !strings.Contains(string(b), "("+s.Comm+")") || strings.Count(string(b), ")") > strings.Count(s.Comm, ")")+1 {
			t.Fatalf("ParseStat(%q): comm %q is not the text between the first ( and the last )", b, s.Comm)
		}
	})
}
