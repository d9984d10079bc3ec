package snpmeasure

import (
	"encoding/hex"
	"testing"
)

func digestOf(t *testing.T, s string) [DigestSize]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != DigestSize {
		t.Fatalf("bad digest %q", s)
	}
	return [DigestSize]byte(b)
}

// TestExtendMatchesSevSnpMeasure checks the extension against vectors that
// virtee/sev-snp-measure committed for its OVMF fixture (reset EIP
// 0x80b004, vCPU type EPYC-v4, SEV features 0x1, kernel command line
// "console=ttyS0 loglevel=7"): its 1-vCPU digest extended by three AP VMSA
// pages must be its 4-vCPU digest. The two digests were computed by another
// implementation from the whole firmware image, not by this package.
func TestExtendMatchesSevSnpMeasure(t *testing.T) {
	seed := digestOf(t, "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa")
	want := digestOf(t, "ef493c232fc8fac47f485398e3873a84ac5c45570bcd8a34aba093c084060534d633824df94b9eba33dc3a3052ae565a")
	epycV4 := CPUSignature(23, 1, 2)
	got, err := Digest(seed, 4, 0x80b004, epycV4)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("4 vCPUs:\n got %x\nwant %x", got, want)
	}
	if one, _ := Digest(seed, 1, 0x80b004, epycV4); one != seed {
		t.Fatal("1 vCPU must be the seed itself")
	}
	// The reset EIP and the CPU signature both reach the digest.
	if other, _ := Digest(seed, 4, 0x80b000, epycV4); other == want {
		t.Fatal("digest does not depend on the AP reset EIP")
	}
	if other, _ := Digest(seed, 4, 0x80b004, CPUSignature(25, 1, 1)); other == want {
		t.Fatal("digest does not depend on the CPU signature")
	}
}

func TestCPUSignature(t *testing.T) {
	tests := []struct {
		name                    string
		family, model, stepping int
		want                    uint32
	}{
		{"EPYC-v4", 23, 1, 2, 0x800f12},
		{"EPYC-Rome", 23, 49, 0, 0x830f10},
		{"EPYC-Milan", 25, 1, 1, 0xa00f11},
		{"EPYC-Genoa", 25, 17, 0, 0xa10f10},
	}
	for _, tt := range tests {
		if got := CPUSignature(tt.family, tt.model, tt.stepping); got != tt.want {
			t.Errorf("%s: %#x, want %#x", tt.name, got, tt.want)
		}
	}
	for line, want := range map[string]uint32{"Milan": 0xa00f11, "Genoa": 0xa10f10} {
		if got, err := ProductSignature(line); err != nil || got != want {
			t.Errorf("ProductSignature(%s) = %#x, %v; want %#x", line, got, err, want)
		}
	}
	if _, err := ProductSignature("Turin"); err == nil {
		t.Error("an unknown product line has no signature")
	}
}

func TestDigestsStopsEarly(t *testing.T) {
	n := 0
	for i := range Digests([DigestSize]byte{}, 0x80b004, 0xa00f11, MaxVCPUs) {
		n = i
		if i == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("stopped at %d", n)
	}
	if _, err := Digest([DigestSize]byte{}, 0, 0, 0); err == nil {
		t.Fatal("0 vCPUs must fail")
	}
}
