// Package lazyre is regexp with compilation deferred to first use, so a
// package's table of patterns costs nothing at start-up in a command that
// never matches against it (ccproxy version, relay mode). A file switches
// by importing it under regexp's name:
//
//	import regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
//
//	var helloRe = regexp.MustCompile(`hello`) // compiled by the first MatchString
//
// A pattern that does not compile panics at first use instead of at
// start-up; the package's tests use every pattern, so they still catch it.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a *regexp.Regexp compiled on first use. Safe for concurrent use.
type Regexp struct {
	str string
	re  func() *regexp.Regexp
}

// MustCompile returns a Regexp for str; str is compiled (and panics if it
// is invalid) the first time the Regexp is used.
func MustCompile(str string) *Regexp {
	return &Regexp{str: str, re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(str) })}
}

// QuoteMeta is regexp.QuoteMeta.
func QuoteMeta(s string) string { return regexp.QuoteMeta(s) }

// Regexp returns the compiled regexp.
func (r *Regexp) Regexp() *regexp.Regexp { return r.re() }

func (r *Regexp) String() string                         { return r.str }
func (r *Regexp) MatchString(s string) bool              { return r.re().MatchString(s) }
func (r *Regexp) FindString(s string) string             { return r.re().FindString(s) }
func (r *Regexp) FindStringIndex(s string) []int         { return r.re().FindStringIndex(s) }
func (r *Regexp) FindStringSubmatch(s string) []string   { return r.re().FindStringSubmatch(s) }
func (r *Regexp) FindStringSubmatchIndex(s string) []int { return r.re().FindStringSubmatchIndex(s) }
func (r *Regexp) FindAllString(s string, n int) []string { return r.re().FindAllString(s, n) }
func (r *Regexp) FindAllStringIndex(s string, n int) [][]int {
	return r.re().FindAllStringIndex(s, n)
}
func (r *Regexp) FindAllStringSubmatch(s string, n int) [][]string {
	return r.re().FindAllStringSubmatch(s, n)
}
func (r *Regexp) FindAllStringSubmatchIndex(s string, n int) [][]int {
	return r.re().FindAllStringSubmatchIndex(s, n)
}
func (r *Regexp) ReplaceAllString(src, repl string) string {
	return r.re().ReplaceAllString(src, repl)
}
func (r *Regexp) ReplaceAllStringFunc(src string, repl func(string) string) string {
	return r.re().ReplaceAllStringFunc(src, repl)
}
func (r *Regexp) ReplaceAllLiteralString(src, repl string) string {
	return r.re().ReplaceAllLiteralString(src, repl)
}
func (r *Regexp) SubexpNames() []string          { return r.re().SubexpNames() }
func (r *Regexp) SubexpIndex(name string) int    { return r.re().SubexpIndex(name) }
func (r *Regexp) NumSubexp() int                 { return r.re().NumSubexp() }
func (r *Regexp) Split(s string, n int) []string { return r.re().Split(s, n) }
