package explain

import (
	regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
	"strings"
	"unicode/utf8"
)

// ansiEscape matches terminal colour and cursor sequences (CSI ... final
// byte) and operating-system commands (OSC ... BEL or ST), which coloured
// loggers and pasted terminal sessions carry.
var ansiEscape = regexp.MustCompile("\x1b(?:\\[[0-9;?]*[ -/]*[@-~]|\\][^\x07\x1b]*(?:\x07|\x1b\\\\)|[@-_])")

// maxUnescapeRounds bounds how many layers of quoting are peeled off: an
// error quoted by the CLI (%q), logged by slog (msg="...") and pasted from
// JSON has three.
const maxUnescapeRounds = 4

// normalize turns pasted text into one line on which every recogniser runs:
// colour codes removed, backslash escapes (\" \\ \n \u003c ...) undone, line
// breaks deleted and runs of blanks collapsed to one space.
//
// Line breaks are deleted rather than turned into spaces because terminals and
// mail clients wrap long error messages at a fixed column, splitting a word or
// a hex value in two; the patterns accept a missing blank wherever a message
// has one, so a break that replaced a blank costs nothing. Offsets into the
// result keep the order of appearance of the original text.
//
// lines holds the offsets in the result at which a line of the input began,
// for the few lookups that must not cross into an unrelated earlier line.
func normalize(s string) (text string, lines []int) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = ansiEscape.ReplaceAllString(s, "")
	for range maxUnescapeRounds {
		u, changed := unescapeOnce(s)
		s = u
		if !changed {
			break
		}
	}
	// Escapes may have produced new colour codes (JSON logs carry \u001b[31m).
	s = ansiEscape.ReplaceAllString(s, "")

	var b strings.Builder
	b.Grow(len(s))
	space := false
	lines = []int{0}
	for _, r := range s {
		switch r {
		case '\n':
			if n := b.Len(); lines[len(lines)-1] != n {
				lines = append(lines, n)
			}
			continue
		case '\r':
			continue
		case ' ', '\t', '\v', '\f', '\u00a0':
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String(), lines
}

// unescapeOnce removes one layer of Go/JSON string escaping. Unknown escapes
// are kept as they are: the text is a paste, not a string literal, and a lone
// backslash must not swallow the next character.
func unescapeOnce(s string) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s))
	changed := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		n := s[i+1]
		switch n {
		case '"', '\\', '\'', '/', '`':
			b.WriteByte(n)
		case 'n', 'r':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if r, ok := hexRune(s, i+2, 4); ok {
				b.WriteRune(r)
				i += 5
				changed = true
				continue
			}
			b.WriteByte(c)
			continue
		case 'x':
			if r, ok := hexRune(s, i+2, 2); ok && r < utf8.RuneSelf {
				b.WriteRune(r)
				i += 3
				changed = true
				continue
			}
			b.WriteByte(c)
			continue
		default:
			b.WriteByte(c)
			continue
		}
		i++
		changed = true
	}
	return b.String(), changed
}

func hexRune(s string, at, n int) (rune, bool) {
	if at+n > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[at : at+n]) {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// pattern compiles a recogniser pattern written the way the message reads:
// every literal blank (outside a character class) matches any run of
// whitespace including none, because normalize deletes line breaks that may
// have stood in for a blank. Patterns are case-sensitive on purpose: Go's
// regexp skips ahead to a literal prefix only then, which keeps huge pastes
// fast; the few texts whose capitalisation varies spell out both forms.
func pattern(p string) *regexp.Regexp {
	var b strings.Builder
	inClass, escaped := false, false
	for _, r := range p {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == '[' && !inClass:
			inClass = true
		case r == ']' && inClass:
			inClass = false
		case r == ' ' && !inClass:
			b.WriteString(`\s*`)
			continue
		}
		b.WriteRune(r)
	}
	return regexp.MustCompile(b.String())
}
