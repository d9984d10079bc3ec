//go:build !linux

package footprint

// ReleaseStartupPages does nothing outside Linux.
func ReleaseStartupPages() uintptr { return 0 }
