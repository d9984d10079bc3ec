package attest

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	sevabi "github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// evidence is one decoded attestation document.
type evidence struct {
	platform string
	format   string // how it was encoded, for printing
	snp      *spb.Attestation
	tdx      *tpb.QuoteV4
	insecure *insecureDoc
	// tdxCollateral is the size of unsigned collateral attached to a TDX
	// quote (JSON in ExtraBytes, or the protobuf trailer field 65535).
	tdxCollateral int
}

// insecureDoc is the document of Contrast's insecure platform.
type insecureDoc struct {
	ReportData []byte
	HostData   []byte
}

// tdxTrailerField is the protobuf field number under which newer Contrast
// issuers append collateral to the marshaled QuoteV4.
const tdxTrailerField = 65535

// decodeExtension decodes the value of a Contrast attestation extension.
func decodeExtension(oid asn1.ObjectIdentifier, value []byte) (*evidence, error) {
	if len(value) > MaxEvidenceSize {
		return nil, fmt.Errorf("the attestation document is %d bytes, more than the %d-byte limit", len(value), MaxEvidenceSize)
	}
	switch {
	case oid.Equal(OIDSNP):
		ev, err := decodeSNPProto(value)
		switch {
		case err == nil:
			return ev, nil
		case len(value) == sevabi.ReportSize:
			return decodeSNPRaw(value)
		case len(value) == base64.StdEncoding.EncodedLen(sevabi.ReportSize):
			// The first Contrast releases sent the raw report base64-encoded.
			raw, b64err := base64.StdEncoding.DecodeString(string(value))
			if b64err == nil {
				ev, err := decodeSNPRaw(raw)
				if ev != nil {
					ev.format = fmt.Sprintf("base64 raw %d-byte SNP report", sevabi.ReportSize)
				}
				return ev, err
			}
		}
		return nil, fmt.Errorf("the SNP attestation document (%d bytes) is neither a sevsnp.Attestation protobuf (%v) nor a raw %d-byte report", len(value), err, sevabi.ReportSize)
	case oid.Equal(OIDTDX):
		if ev, err := decodeTDXProto(value); err == nil {
			return ev, nil
		} else if !looksLikeRawQuote(value) {
			return nil, fmt.Errorf("the TDX attestation document (%d bytes) is neither a tdx.QuoteV4 protobuf (%v) nor a raw quote", len(value), err)
		}
		return decodeTDXRaw(value)
	case oid.Equal(OIDInsecure):
		return decodeInsecure(value)
	}
	return nil, fmt.Errorf("extension %s is not a Contrast attestation document", oid)
}

// decodeFile recognizes raw evidence in a file.
func decodeFile(data []byte) (*evidence, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		return decodeInsecure(trimmed)
	}
	if looksLikeRawQuote(data) {
		return decodeTDXRaw(data)
	}
	if looksLikeRawReport(data) {
		return decodeSNPRaw(data)
	}
	if ev, err := decodeSNPProto(data); err == nil {
		return ev, nil
	}
	if ev, err := decodeTDXProto(data); err == nil {
		return ev, nil
	}
	if len(data) == 64 {
		return decodeInsecure(data)
	}
	head := data
	if len(head) > 8 {
		head = head[:8]
	}
	return nil, fmt.Errorf("the input (%d bytes, starting %x) is not a certificate, SNP report or attestation, TDX quote or insecure-platform document", len(data), head)
}

func decodeSNPProto(b []byte) (*evidence, error) {
	att := &spb.Attestation{}
	if err := proto.Unmarshal(b, att); err != nil {
		return nil, err
	}
	if att.GetReport() == nil {
		return nil, fmt.Errorf("no report in the attestation")
	}
	// Re-encoding checks every field size (what go-sev-guest would trip on).
	if _, err := sevabi.ReportToAbiBytes(att.GetReport()); err != nil {
		return nil, fmt.Errorf("malformed report: %w", err)
	}
	if _, err := sevabi.ParseSignerInfo(att.GetReport().GetSignerInfo()); err != nil {
		return nil, fmt.Errorf("malformed report: %w", err)
	}
	if att.CertificateChain == nil {
		att.CertificateChain = &spb.CertificateChain{}
	}
	return &evidence{platform: PlatformSNP, format: "sevsnp.Attestation protobuf", snp: att}, nil
}

func looksLikeRawReport(b []byte) bool {
	if len(b) < sevabi.ReportSize {
		return false
	}
	v := binary.LittleEndian.Uint32(b[:4])
	return v >= sevabi.MinSupportedReportVersion && v <= sevabi.MaxSupportedReportVersion
}

// decodeSNPRaw decodes a raw report, optionally followed by the certificate
// table the guest firmware returns with an extended report.
func decodeSNPRaw(b []byte) (*evidence, error) {
	if len(b) < sevabi.ReportSize {
		return nil, fmt.Errorf("the SNP report is truncated: %d bytes, want %d", len(b), sevabi.ReportSize)
	}
	report, err := sevabi.ReportToProto(b[:sevabi.ReportSize])
	if err != nil {
		return nil, fmt.Errorf("the raw SNP report does not decode: %w", err)
	}
	att := &spb.Attestation{Report: report, CertificateChain: &spb.CertificateChain{}}
	format := fmt.Sprintf("raw %d-byte SNP report", sevabi.ReportSize)
	if rest := b[sevabi.ReportSize:]; len(rest) > 0 {
		table := new(sevabi.CertTable)
		if err := table.Unmarshal(rest); err != nil {
			return nil, fmt.Errorf("the %d bytes after the SNP report are not a certificate table: %w", len(rest), err)
		}
		att.CertificateChain = table.Proto()
		format += " with certificate table"
	}
	return &evidence{platform: PlatformSNP, format: format, snp: att}, nil
}

func decodeTDXProto(b []byte) (*evidence, error) {
	q := &tpb.QuoteV4{}
	if err := proto.Unmarshal(b, q); err != nil {
		return nil, err
	}
	if err := tdxabi.CheckQuoteV4(q); err != nil {
		return nil, err
	}
	// CheckQuoteV4 checks every body field's size but REPORTDATA's. An
	// oversized one would still verify (the ABI encoding keeps its first
	// 64 bytes) and then fail only as a report data mismatch.
	if n := len(q.GetTdQuoteBody().GetReportData()); n != tdxabi.ReportDataSize {
		return nil, fmt.Errorf("QuoteV4 TD Quote Body error: reportData size is %d bytes. Expected %d bytes", n, tdxabi.ReportDataSize)
	}
	ev := &evidence{platform: PlatformTDX, format: "tdx.QuoteV4 protobuf", tdx: q}
	ev.tdxCollateral = len(q.GetExtraBytes()) + trailerSize(q.ProtoReflect().GetUnknown())
	return ev, nil
}

// trailerSize sums the sizes of the collateral extensions newer Contrast
// issuers append under field 65535 (unknown to go-tdx-guest's message).
func trailerSize(unknown []byte) int {
	n := 0
	for len(unknown) > 0 {
		num, typ, l := protowire.ConsumeTag(unknown)
		if l < 0 {
			return n
		}
		unknown = unknown[l:]
		m := protowire.ConsumeFieldValue(num, typ, unknown)
		if m < 0 {
			return n
		}
		if num == tdxTrailerField && typ == protowire.BytesType {
			if v, vl := protowire.ConsumeBytes(unknown); vl > 0 {
				n += len(v)
			}
		}
		unknown = unknown[m:]
	}
	return n
}

func looksLikeRawQuote(b []byte) bool {
	return len(b) >= tdxabi.QuoteMinSize &&
		binary.LittleEndian.Uint16(b[0:2]) == tdxabi.QuoteVersion &&
		binary.LittleEndian.Uint32(b[4:8]) == tdxabi.TeeTDX
}

func decodeTDXRaw(b []byte) (*evidence, error) {
	q, err := tdxabi.QuoteToProto(b)
	if err != nil {
		return nil, fmt.Errorf("the raw TDX quote does not decode: %w", err)
	}
	qv, ok := q.(*tpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("the raw TDX quote has unsupported type %T", q)
	}
	return &evidence{platform: PlatformTDX, format: "raw Intel TDX quote (v4)", tdx: qv, tdxCollateral: len(qv.GetExtraBytes())}, nil
}

// decodeInsecure decodes the insecure platform's JSON document, or the
// oldest form: the 64 report-data bytes alone.
func decodeInsecure(b []byte) (*evidence, error) {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var doc insecureDoc // encoding/json matches "reportData" and "ReportData"
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, fmt.Errorf("the insecure-platform document is not valid JSON: %w", err)
		}
		if doc.ReportData == nil {
			return nil, fmt.Errorf("the insecure-platform document has no ReportData")
		}
		return &evidence{platform: PlatformInsecure, format: "insecure-platform JSON document", insecure: &doc}, nil
	}
	if len(b) == 64 {
		return &evidence{platform: PlatformInsecure, format: "raw 64-byte insecure-platform report data",
			insecure: &insecureDoc{ReportData: bytes.Clone(b)}}, nil
	}
	return nil, fmt.Errorf("the insecure-platform document (%d bytes) is neither JSON nor 64 raw report-data bytes", len(b))
}
