package attest

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// hexList renders one value as hex, several as "a or b or c".
func hexList(values [][]byte) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = hex.EncodeToString(v)
	}
	if len(s) == 1 {
		return s[0]
	}
	return "one of " + strings.Join(s, " or ")
}

// shortDuration renders 3h02m, 45m, 30s.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	// Hours are shown with minutes only, so round to the minute there:
	// certificate times are whole seconds, and a 3 h offset measured a
	// moment later must not read 2h59m.
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case h > 0 && m == 0 && s == 0:
		return fmt.Sprintf("%dh", h)
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	default:
		return fmt.Sprintf("%ds", s)
	}
}

// signedDuration renders an offset with its direction.
func signedDuration(d time.Duration) string {
	switch {
	case d > 0:
		return "+" + shortDuration(d) + " (Coordinator ahead)"
	case d < 0:
		return "-" + shortDuration(d) + " (Coordinator behind)"
	}
	return "0s"
}

func tcbString(v uint64) string {
	p := kds.DecomposeTCBVersion(kds.TCBVersion(v))
	return fmt.Sprintf("bootloader=%d tee=%d snp=%d microcode=%d (0x%016x)", p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl, v)
}

func tcbPartsString(p kds.TCBParts) string {
	v, _ := kds.ComposeTCBParts(p)
	return tcbString(uint64(v))
}

func snpPolicyString(v uint64) string {
	p, err := abi.ParseSnpPolicy(v)
	if err != nil {
		return fmt.Sprintf("0x%x (malformed: %v)", v, err)
	}
	return fmt.Sprintf("0x%x (%s)", v, policyFlags(p))
}

func policyFlags(p abi.SnpPolicy) string {
	flags := []string{fmt.Sprintf("ABI %d.%d", p.ABIMajor, p.ABIMinor)}
	for _, f := range []struct {
		on   bool
		name string
	}{
		{p.SMT, "SMT"}, {p.MigrateMA, "migration agent"}, {p.Debug, "debug"},
		{p.SingleSocket, "single socket"}, {p.CXLAllowed, "CXL"}, {p.MemAES256XTS, "AES-256-XTS"},
		{p.RAPLDis, "RAPL disabled"}, {p.CipherTextHidingDRAM, "ciphertext hiding"},
		{p.PageSwapDisable, "page swap disabled"},
	} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	return strings.Join(flags, ", ")
}

func platformInfoString(v uint64) string {
	p, err := abi.ParseSnpPlatformInfo(v)
	if err != nil {
		return fmt.Sprintf("0x%x (malformed: %v)", v, err)
	}
	return fmt.Sprintf("0x%x (%s)", v, platformInfoFlags(p))
}

func platformInfoFlags(p abi.SnpPlatformInfo) string {
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{
		{p.SMTEnabled, "SMT enabled"}, {p.TSMEEnabled, "TSME enabled"}, {p.ECCEnabled, "ECC enabled"},
		{p.RAPLDisabled, "RAPL disabled"}, {p.CiphertextHidingDRAMEnabled, "ciphertext hiding enabled"},
		{p.AliasCheckComplete, "alias check complete"}, {p.TIOEnabled, "SEV-TIO enabled"},
	} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) == 0 {
		return "nothing enabled"
	}
	return strings.Join(flags, ", ")
}
