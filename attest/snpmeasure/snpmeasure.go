// Package snpmeasure extends an SEV-SNP launch digest by application
// processors. The launch measurement of a VM depends on its vCPU count: after
// the firmware and the boot processor's VMSA, the firmware measures one
// VMSA page per further vCPU. Newest Contrast manifests give the 1-vCPU
// measurement (the seed) with the firmware's AP reset EIP, and the CLI tries
// every vCPU count from 1 to MaxVCPUs until one matches the report.
//
//	for n, d := range snpmeasure.Digests(seed, apEIP, sig, snpmeasure.MaxVCPUs) {
//		if d == report.Measurement { ... n vCPUs ... }
//	}
//
// Facts from Contrast's internal/snp (a translation of sev-snp-measure's
// gctx.py and vmsa.py, QEMU VMM type) and internal/attestation/snp.
package snpmeasure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"iter"
)

const (
	// DigestSize is the size of a launch digest (SHA-384).
	DigestSize = sha512.Size384
	// MaxVCPUs is the largest vCPU count the Contrast CLI tries.
	MaxVCPUs = 220

	pageSize     = 4096
	pageInfoSize = 0x70
	pageTypeVMSA = 0x02
	// vmsaGPA is the guest-physical address every VMSA page is measured at.
	vmsaGPA = 0xFFFFFFFFF000
	// guestFeatures is the SEV_FEATURES value Contrast's VMs use (SNP active).
	guestFeatures = 0x1
)

// CPUSignature is the CPUID Fn0000_0001_EAX signature for an AMD family,
// model and stepping, as QEMU puts it in RDX of each VMSA.
func CPUSignature(family, model, stepping int) uint32 {
	var famLow, famHigh uint32
	if family > 0xf {
		famLow, famHigh = 0xf, uint32(family-0xf)&0xff
	} else {
		famLow = uint32(family)
	}
	return famHigh<<20 | (uint32(model)>>4&0xf)<<16 | famLow<<8 | (uint32(model)&0xf)<<4 | uint32(stepping)&0xf
}

// ProductSignature is the CPU signature the Contrast CLI uses for a product
// line from the manifest: EPYC-Milan (family 25, model 1, stepping 1) or
// EPYC-Genoa (family 25, model 17, stepping 0).
func ProductSignature(productLine string) (uint32, error) {
	switch productLine {
	case "Milan":
		return CPUSignature(25, 1, 1), nil
	case "Genoa":
		return CPUSignature(25, 17, 0), nil
	}
	return 0, fmt.Errorf("no CPU signature for product %q (want Milan or Genoa)", productLine)
}

// APVMSA is the VMSA page QEMU builds for an application processor that
// starts at eip, with the given CPU signature.
func APVMSA(eip uint32, sig uint32) [pageSize]byte {
	var p [pageSize]byte
	seg := func(off int, sel, attrib uint16, limit uint32, base uint64) {
		binary.LittleEndian.PutUint16(p[off:], sel)
		binary.LittleEndian.PutUint16(p[off+2:], attrib)
		binary.LittleEndian.PutUint32(p[off+4:], limit)
		binary.LittleEndian.PutUint64(p[off+8:], base)
	}
	seg(0x000, 0, 0x93, 0xffff, 0)                           // es
	seg(0x010, 0xf000, 0x9b, 0xffff, uint64(eip)&0xffff0000) // cs
	seg(0x020, 0, 0x93, 0xffff, 0)                           // ss
	seg(0x030, 0, 0x93, 0xffff, 0)                           // ds
	seg(0x040, 0, 0x93, 0xffff, 0)                           // fs
	seg(0x050, 0, 0x93, 0xffff, 0)                           // gs
	seg(0x060, 0, 0, 0xffff, 0)                              // gdtr
	seg(0x070, 0, 0x82, 0xffff, 0)                           // ldtr
	seg(0x080, 0, 0, 0xffff, 0)                              // idtr
	seg(0x090, 0, 0x8b, 0xffff, 0)                           // tr
	put64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(p[off:], v) }
	put64(0x0d0, 0x1000)                             // EFER: SVME
	put64(0x148, 0x40)                               // CR4: MCE
	put64(0x158, 0x10)                               // CR0
	put64(0x160, 0x400)                              // DR7
	put64(0x168, 0xffff0ff0)                         // DR6
	put64(0x170, 0x2)                                // RFLAGS
	put64(0x178, uint64(eip)&0xffff)                 // RIP
	put64(0x268, 0x7040600070406)                    // G_PAT
	put64(0x310, uint64(sig))                        // RDX: CPU signature
	put64(0x3b0, guestFeatures)                      // SEV_FEATURES
	put64(0x3e8, 0x1)                                // XCR0
	binary.LittleEndian.PutUint32(p[0x408:], 0x1f80) // MXCSR
	binary.LittleEndian.PutUint16(p[0x410:], 0x37f)  // x87 FCW
	return p
}

// extend is the firmware's PAGE_INFO update (SEV-SNP ABI, "PAGE_INFO"):
// the new digest is SHA-384 over the old one, the page's contents digest,
// the structure's length, page type and guest-physical address.
func extend(ld [DigestSize]byte, pageType byte, gpa uint64, contents [DigestSize]byte) [DigestSize]byte {
	var info [pageInfoSize]byte
	copy(info[0:], ld[:])
	copy(info[DigestSize:], contents[:])
	binary.LittleEndian.PutUint16(info[2*DigestSize:], pageInfoSize)
	info[2*DigestSize+2] = pageType
	// IMI page and VMPL permissions stay zero.
	binary.LittleEndian.PutUint64(info[2*DigestSize+8:], gpa)
	return sha512.Sum384(info[:])
}

// Digests yields the launch digest for 1, 2, … max vCPUs from the 1-vCPU
// seed, each one AP VMSA page after the previous.
func Digests(seed [DigestSize]byte, apEIP, sig uint32, max int) iter.Seq2[int, [DigestSize]byte] {
	return func(yield func(int, [DigestSize]byte) bool) {
		page := APVMSA(apEIP, sig)
		pageDigest := sha512.Sum384(page[:])
		ld := seed
		for n := 1; n <= max; n++ {
			if n > 1 {
				ld = extend(ld, pageTypeVMSA, vmsaGPA, pageDigest)
			}
			if !yield(n, ld) {
				return
			}
		}
	}
}

// Digest is the launch digest for vcpus vCPUs from the 1-vCPU seed.
func Digest(seed [DigestSize]byte, vcpus int, apEIP, sig uint32) ([DigestSize]byte, error) {
	if vcpus < 1 || vcpus > 0xffff {
		return [DigestSize]byte{}, fmt.Errorf("invalid vCPU count %d", vcpus)
	}
	var out [DigestSize]byte
	for n, d := range Digests(seed, apEIP, sig, vcpus) {
		if n == vcpus {
			out = d
		}
	}
	return out, nil
}
