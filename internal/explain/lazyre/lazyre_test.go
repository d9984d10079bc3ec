package lazyre

import (
	"regexp"
	"slices"
	"testing"
)

func TestSameAsRegexp(t *testing.T) {
	for _, tc := range []struct{ pattern, in string }{
		{`dial tcp[46]? ([^ ]+): connect: (connection refused)`, "dial tcp 10.0.0.1:1313: connect: connection refused"},
		{`(?i)pod/([a-z0-9-]+)`, "Pod/coordinator-0 and pod/other"},
		{`x`, ""},
	} {
		lazy, eager := MustCompile(tc.pattern), regexp.MustCompile(tc.pattern)
		if lazy.MatchString(tc.in) != eager.MatchString(tc.in) ||
			!slices.Equal(lazy.FindStringSubmatch(tc.in), eager.FindStringSubmatch(tc.in)) ||
			len(lazy.FindAllStringSubmatchIndex(tc.in, -1)) != len(eager.FindAllStringSubmatchIndex(tc.in, -1)) ||
			lazy.String() != tc.pattern {
			t.Errorf("%q on %q: lazy and eager regexps differ", tc.pattern, tc.in)
		}
	}
}

func TestInvalidPatternPanicsAtFirstUse(t *testing.T) {
	re := MustCompile(`(`) // no panic yet
	defer func() {
		if recover() == nil {
			t.Error("an invalid pattern did not panic at first use")
		}
	}()
	re.MatchString("x")
}
