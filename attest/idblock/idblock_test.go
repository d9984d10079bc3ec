package idblock

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

func uncompressed(k Key) []byte {
	b := make([]byte, 1+2*48)
	b[0] = 4
	k.X.FillBytes(b[1:49])
	k.Y.FillBytes(b[49:])
	return b
}

// TestDerivedKeyVerifiesConstantSignature checks the derivation against
// crypto/ecdsa, which shares no code with it: the derived key is a P-384
// point and (R=2, S=1) is a valid signature by it over SHA-384 of the ID
// block; so is the other candidate, and the derived one sorts first.
func TestDerivedKeyVerifiesConstantSignature(t *testing.T) {
	tests := []struct {
		name   string
		digest [48]byte
		policy abi.SnpPolicy
	}{
		{"zero digest, SMT", [48]byte{}, abi.SnpPolicy{SMT: true}},
		{"hashed digest, SMT", sha512.Sum384([]byte("launch")), abi.SnpPolicy{SMT: true}},
		{"debug policy", sha512.Sum384([]byte("launch")), abi.SnpPolicy{SMT: true, Debug: true}},
		{"ABI minor", sha512.Sum384([]byte("other")), abi.SnpPolicy{ABIMajor: 1, ABIMinor: 55, SMT: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := DeriveKey(tt.digest, tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), uncompressed(k))
			if err != nil {
				t.Fatalf("derived key is not a P-384 point: %v", err)
			}
			block := Block(tt.digest, tt.policy)
			hash := sha512.Sum384(block[:])
			if !ecdsa.Verify(pub, hash[:], big.NewInt(2), big.NewInt(1)) {
				t.Fatal("the constant signature (2, 1) does not verify with the derived key")
			}
			// The other recovery candidate: −R instead of R.
			all, err := recoverKeys(big.NewInt(2), big.NewInt(1), new(big.Int).SetBytes(hash[:]))
			if err != nil || len(all) != 2 {
				t.Fatalf("want two candidates, got %d (%v)", len(all), err)
			}
			other := all[1]
			otherPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), uncompressed(other))
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.Verify(otherPub, hash[:], big.NewInt(2), big.NewInt(1)) {
				t.Fatal("the second candidate does not verify")
			}
			if k.X.Cmp(other.X) > 0 || (k.X.Cmp(other.X) == 0 && k.Y.Cmp(other.Y) > 0) {
				t.Fatal("the derived key is not the first of the sorted candidates")
			}
		})
	}
}

func TestBlockLayout(t *testing.T) {
	ld := sha512.Sum384([]byte("ld"))
	policy := abi.SnpPolicy{SMT: true}
	b := Block(ld, policy)
	if hex.EncodeToString(b[:48]) != hex.EncodeToString(ld[:]) {
		t.Error("LD is not the first 48 bytes")
	}
	for i := 0x30; i < 0x50; i++ {
		if b[i] != 0 {
			t.Fatalf("family/image ID byte %#x is %d", i, b[i])
		}
	}
	if v := binary.LittleEndian.Uint32(b[0x50:]); v != 1 {
		t.Errorf("version %d, want 1", v)
	}
	if v := binary.LittleEndian.Uint32(b[0x54:]); v != 2 {
		t.Errorf("guest SVN %d, want 2", v)
	}
	if v := binary.LittleEndian.Uint64(b[0x58:]); v != abi.SnpPolicyToBytes(policy) {
		t.Errorf("policy %#x, want %#x", v, abi.SnpPolicyToBytes(policy))
	}
}

func TestAPIBytes(t *testing.T) {
	k := Key{X: big.NewInt(0x0102), Y: big.NewInt(0x0304)}
	b := k.APIBytes()
	if binary.LittleEndian.Uint32(b[:4]) != 2 {
		t.Error("curve ID is not 2 (P-384)")
	}
	if b[4] != 0x02 || b[5] != 0x01 || b[6] != 0 {
		t.Errorf("Qx not little endian: % x", b[4:8])
	}
	if b[0x4c] != 0x04 || b[0x4d] != 0x03 {
		t.Errorf("Qy not at 0x4c little endian: % x", b[0x4c:0x50])
	}
	for i := 0x94; i < KeySize; i++ {
		if b[i] != 0 {
			t.Fatalf("reserved byte %#x is %d", i, b[i])
		}
	}
}

// TestDigestDependsOnInputs: the trusted digest changes with the launch
// digest and with the guest policy, so evidence from another image or
// policy is never trusted.
func TestDigestDependsOnInputs(t *testing.T) {
	base, err := IDKeyDigest(sha512.Sum384([]byte("a")), abi.SnpPolicy{SMT: true})
	if err != nil {
		t.Fatal(err)
	}
	otherLD, _ := IDKeyDigest(sha512.Sum384([]byte("b")), abi.SnpPolicy{SMT: true})
	otherPolicy, _ := IDKeyDigest(sha512.Sum384([]byte("a")), abi.SnpPolicy{SMT: true, Debug: true})
	if base == otherLD || base == otherPolicy {
		t.Fatal("digest does not depend on launch digest and policy")
	}
	again, _ := IDKeyDigest(sha512.Sum384([]byte("a")), abi.SnpPolicy{SMT: true})
	if base != again {
		t.Fatal("derivation is not deterministic")
	}
}
