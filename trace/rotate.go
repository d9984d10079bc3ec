package trace

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// backupTimeFormat is how lumberjack names a rotated file:
// traces-2026-12-06T20-19-20.000.jsonl for traces.jsonl.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// RotatedSet is the files a rotating trace file at path is made of, oldest
// first: its kept rotated files, then path itself (if it exists). A path
// with no rotated files is a set of one.
func RotatedSet(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type backup struct {
		name string
		at   time.Time
	}
	var backups []backup
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) {
			continue
		}
		ts := strings.TrimSuffix(strings.TrimPrefix(n, prefix), ext)
		at, err := time.Parse(backupTimeFormat, ts)
		if err != nil {
			continue // another file that only starts alike
		}
		backups = append(backups, backup{filepath.Join(filepath.Dir(path), n), at})
	}
	sort.Slice(backups, func(i, j int) bool { return backups[i].at.Before(backups[j].at) })
	var out []string
	for _, b := range backups {
		out = append(out, b.name)
	}
	if _, err := os.Stat(path); err == nil || len(out) == 0 {
		out = append(out, path)
	}
	return out, nil
}
