package attest

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestShortDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{30 * time.Second, "30s"},
		{45*time.Minute + 5*time.Second, "45m05s"},
		{2 * time.Hour, "2h"},
		{3*time.Hour + 2*time.Minute, "3h02m"},
		{-(3*time.Hour + 2*time.Minute + 20*time.Second), "3h02m"},
		{49 * time.Hour, "49h"},
	} {
		if got := shortDuration(tc.d); got != tc.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestTrailerSize(t *testing.T) {
	ext := func(collateral string) []byte {
		inner := protowire.AppendTag(nil, 1, protowire.BytesType)
		inner = protowire.AppendBytes(inner, []byte(collateral))
		b := protowire.AppendTag(nil, tdxTrailerField, protowire.BytesType)
		return protowire.AppendBytes(b, inner)
	}
	other := protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 42)
	for _, tc := range []struct {
		name    string
		unknown []byte
		want    int
	}{
		{"none", nil, 0},
		{"one", ext("abc"), 5},
		{"two and another field", append(append(ext("abc"), other...), ext("")...), 7},
		{"truncated", ext("abc")[:4], 0},
	} {
		if got := trailerSize(tc.unknown); got != tc.want {
			t.Errorf("%s: trailerSize = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestParseSNPRootsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, pem, want string
	}{
		{"empty", "", "no PEM CERTIFICATE block"},
		{"not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"},
	} {
		_, err := parseSNPRoots([]byte(tc.pem))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestDecodeFileRejects(t *testing.T) {
	report := make([]byte, 1184+10)
	report[0] = 2    // version 2
	report[0xa] = 2  // guest policy bit 17, which must be set
	report[1184] = 1 // then a table that is not one
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"report with broken table", report, "certificate table"},
		{"empty", nil, "is not a certificate"},
		{"JSON without report data", []byte(`{"HostData": "AA=="}`), "no ReportData"},
	} {
		if _, err := decodeFile(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
