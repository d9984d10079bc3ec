// Package idblock derives the SEV-SNP ID key that Contrast's reference values
// trust. Contrast launches every confidential VM with an ID block over the
// VM's launch digest and guest policy, "signed" with a constant signature
// (R = 2, S = 1); the ID key is not a key anyone holds but the public key
// recovered from that signature. The Contrast CLI therefore trusts exactly
// one ID key per launch digest and guest policy, and rejects a report whose
// ID_KEY_DIGEST is anything else ("report ID key not trusted: <hex>").
//
//	digest, err := idblock.IDKeyDigest(measurement, abi.SnpPolicy{SMT: true})
//	if !bytes.Equal(report.GetIdKeyDigest(), digest[:]) { ... }
//
// Layouts follow the SEV-SNP firmware ABI (AMD 56860, "ID block" and
// "ID authentication information structure"); facts from Contrast's
// internal/idblock.
package idblock

import (
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-sev-guest/abi"
)

// Sizes of the structures, in bytes.
const (
	// BlockSize is the size of an ID block.
	BlockSize = 0x60
	// KeySize is the size of a public key in the SEV-SNP API format (curve
	// ID, Qx, Qy, reserved), the bytes the ID_KEY_DIGEST hashes.
	KeySize = 0x404
	// componentSize is the size of Qx, Qy, R and S in the API format: 72
	// bytes, little endian, of which P-384 uses 48.
	componentSize = 0x48
	// curveP384 is the API format's curve ID for P-384.
	curveP384 = 2
)

// Contrast's fixed ID block fields.
const (
	blockVersion = 1
	guestSVN     = 2
)

// Signature is the constant signature Contrast puts in the ID
// authentication block: R = 2 (a valid x coordinate on P-384) and S = 1.
var (
	SignatureR = big.NewInt(2)
	SignatureS = big.NewInt(1)
)

// Block returns the ID block Contrast builds for a launch digest and guest
// policy: LD, zero family and image IDs, version 1, guest SVN 2, policy.
func Block(launchDigest [48]byte, policy abi.SnpPolicy) [BlockSize]byte {
	var b [BlockSize]byte
	copy(b[0x00:0x30], launchDigest[:])
	// 0x30..0x50: FAMILY_ID and IMAGE_ID, zero.
	binary.LittleEndian.PutUint32(b[0x50:], blockVersion)
	binary.LittleEndian.PutUint32(b[0x54:], guestSVN)
	binary.LittleEndian.PutUint64(b[0x58:], abi.SnpPolicyToBytes(policy))
	return b
}

// Key is an ID key: a P-384 point.
type Key struct {
	X, Y *big.Int
}

// APIBytes encodes the key in the SEV-SNP API format: curve ID (4 bytes,
// little endian), Qx and Qy (72 bytes each, little endian, zero padded),
// then reserved zeros up to KeySize.
func (k Key) APIBytes() [KeySize]byte {
	var b [KeySize]byte
	binary.LittleEndian.PutUint32(b[0:4], curveP384)
	putLittleEndian(b[0x04:0x04+componentSize], k.X)
	putLittleEndian(b[0x4c:0x4c+componentSize], k.Y)
	return b
}

// Digest is the SHA-384 of the key's API bytes: what a report's
// ID_KEY_DIGEST holds when this key signed its ID block.
func (k Key) Digest() [48]byte {
	b := k.APIBytes()
	return sha512.Sum384(b[:])
}

// DeriveKey recovers the ID key from the constant signature over the ID
// block of launchDigest and policy, the way Contrast does: public-key
// recovery (SEC 1, 4.1.6) yields two candidates, sorted by X then Y; the
// first is the ID key.
func DeriveKey(launchDigest [48]byte, policy abi.SnpPolicy) (Key, error) {
	block := Block(launchDigest, policy)
	hash := sha512.Sum384(block[:])
	keys, err := recoverKeys(SignatureR, SignatureS, new(big.Int).SetBytes(hash[:]))
	if err != nil {
		return Key{}, fmt.Errorf("recovering the ID key: %w", err)
	}
	return keys[0], nil
}

// IDKeyDigest is the ID_KEY_DIGEST the Contrast CLI trusts for a launch
// digest and guest policy.
func IDKeyDigest(launchDigest [48]byte, policy abi.SnpPolicy) ([48]byte, error) {
	k, err := DeriveKey(launchDigest, policy)
	if err != nil {
		return [48]byte{}, err
	}
	return k.Digest(), nil
}

// recoverKeys returns the public keys for which (r, s) is a valid ECDSA
// P-384 signature of the hash z, with R's x coordinate equal to r, sorted by
// X then Y. Affine arithmetic with math/big: it runs once per check, and
// keeps the derivation independent of the crypto/ecdsa code the tests verify
// it with.
func recoverKeys(r, s, z *big.Int) ([]Key, error) {
	c := p384()
	if r.Sign() <= 0 || r.Cmp(c.n) >= 0 || s.Sign() <= 0 || s.Cmp(c.n) >= 0 {
		return nil, errors.New("signature out of range")
	}
	x := new(big.Int).Mod(r, c.p)
	y := new(big.Int).ModSqrt(c.rhs(x), c.p)
	if y == nil {
		return nil, fmt.Errorf("r = %v is not the x coordinate of a curve point", r)
	}
	rInv := new(big.Int).ModInverse(r, c.n)
	u1 := new(big.Int).Mul(z, rInv)
	u1.Neg(u1).Mod(u1, c.n) // −z/r
	u2 := new(big.Int).Mul(s, rInv)
	u2.Mod(u2, c.n) // s/r
	g := c.scalarMult(point{x: c.gx, y: c.gy}, u1)

	var keys []Key
	for _, ry := range []*big.Int{y, new(big.Int).Sub(c.p, y)} {
		q := c.add(g, c.scalarMult(point{x: x, y: ry}, u2))
		if q.inf {
			continue
		}
		keys = append(keys, Key{X: q.x, Y: q.y})
	}
	if len(keys) == 0 {
		return nil, errors.New("no candidate key")
	}
	if len(keys) == 2 {
		a, b := keys[0], keys[1]
		if c := a.X.Cmp(b.X); c > 0 || (c == 0 && a.Y.Cmp(b.Y) > 0) {
			keys[0], keys[1] = b, a
		}
	}
	return keys, nil
}

func putLittleEndian(dst []byte, v *big.Int) {
	be := v.Bytes()
	for i, j := 0, len(be)-1; j >= 0 && i < len(dst); i, j = i+1, j-1 {
		dst[i] = be[j]
	}
}

// curve is P-384 in short Weierstrass form y² = x³ − 3x + b over p.
type curve struct {
	p, n, b, gx, gy *big.Int
}

func p384() curve {
	params := elliptic.P384().Params()
	return curve{p: params.P, n: params.N, b: params.B, gx: params.Gx, gy: params.Gy}
}

type point struct {
	x, y *big.Int
	inf  bool
}

// rhs is x³ − 3x + b mod p.
func (c curve) rhs(x *big.Int) *big.Int {
	y2 := new(big.Int).Exp(x, big.NewInt(3), c.p)
	y2.Sub(y2, new(big.Int).Mul(big.NewInt(3), x))
	y2.Add(y2, c.b)
	return y2.Mod(y2, c.p)
}

func (c curve) add(a, b point) point {
	switch {
	case a.inf:
		return b
	case b.inf:
		return a
	}
	var lambda *big.Int
	if a.x.Cmp(b.x) == 0 {
		if new(big.Int).Add(a.y, b.y).Mod(new(big.Int).Add(a.y, b.y), c.p).Sign() == 0 {
			return point{inf: true}
		}
		// Doubling: λ = (3x² − 3) / 2y.
		num := new(big.Int).Mul(a.x, a.x)
		num.Mul(num, big.NewInt(3)).Sub(num, big.NewInt(3))
		den := new(big.Int).Lsh(a.y, 1)
		lambda = num.Mul(num, den.ModInverse(den.Mod(den, c.p), c.p))
	} else {
		num := new(big.Int).Sub(b.y, a.y)
		den := new(big.Int).Sub(b.x, a.x)
		lambda = num.Mul(num, den.ModInverse(den.Mod(den, c.p), c.p))
	}
	lambda.Mod(lambda, c.p)
	x := new(big.Int).Mul(lambda, lambda)
	x.Sub(x, a.x).Sub(x, b.x).Mod(x, c.p)
	y := new(big.Int).Sub(a.x, x)
	y.Mul(y, lambda).Sub(y, a.y).Mod(y, c.p)
	return point{x: x, y: y}
}

func (c curve) scalarMult(p point, k *big.Int) point {
	acc := point{inf: true}
	for i := k.BitLen() - 1; i >= 0; i-- {
		acc = c.add(acc, acc)
		if k.Bit(i) == 1 {
			acc = c.add(acc, p)
		}
	}
	return acc
}
