package explain

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Report is what `ccproxy explain --output json` prints.
type Report struct {
	// Recognized is false when no error in the text was recognised.
	Recognized bool      `json:"recognized"`
	Findings   []Finding `json:"findings"`
}

// NewReport wraps findings for JSON output.
func NewReport(findings []Finding) Report {
	if findings == nil {
		findings = []Finding{}
	}
	return Report{Recognized: len(findings) > 0, Findings: findings}
}

// WriteJSON writes the report as one indented JSON object.
func WriteJSON(w io.Writer, findings []Finding) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(NewReport(findings)); err != nil {
		return fmt.Errorf("writing explain report: %w", err)
	}
	return nil
}

// textWidth is where prose is wrapped; values and commands are never broken.
const textWidth = 100

// WriteText writes findings for a person to read. With no findings it says
// that nothing was recognised.
func WriteText(w io.Writer, findings []Finding) error {
	bw := bufio.NewWriter(w)
	if len(findings) == 0 {
		fmt.Fprintln(bw, "No known error recognised in the text.")
		fmt.Fprintln(bw, "ccproxy explain knows the Contrast CLI's connection and attestation errors, kubectl/containerd/Kata")
		fmt.Fprintln(bw, "policy and runtime errors, and Azure policyDecision blobs; paste the complete message.")
		return flush(bw)
	}
	for i, f := range findings {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		kind := ""
		if !f.Contract {
			kind = " (a name used by explain only)"
		}
		fmt.Fprintf(bw, "%d. %s%s\n", i+1, f.Mode, kind)
		writeWrapped(bw, "   ", "   ", f.Summary)
		if f.Count > 1 {
			fmt.Fprintf(bw, "   seen %d times\n", f.Count)
		}
		fmt.Fprintf(bw, "   found:   %s\n", f.Excerpt)
		if len(f.Values) > 0 {
			width := 0
			for _, v := range f.Values {
				width = max(width, len(v.Name))
			}
			for j, v := range f.Values {
				label := "   values:  "
				if j > 0 {
					label = "            "
				}
				fmt.Fprintf(bw, "%s%-*s  %s\n", label, width, v.Name, v.Value)
			}
		}
		if len(f.Alternatives) > 0 {
			fmt.Fprintf(bw, "   or:      %s\n", strings.Join(f.Alternatives, ", "))
		}
		writeWrapped(bw, "   meaning: ", "            ", f.Meaning)
		for j, step := range f.NextSteps {
			first := "   next:    - "
			if j > 0 {
				first = "            - "
			}
			writeWrapped(bw, first, "              ", step)
		}
	}
	return flush(bw)
}

func flush(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing explain report: %w", err)
	}
	return nil
}

// writeWrapped writes text wrapped at textWidth, the first line after first,
// the following ones after rest. Words inside backticks stay on one line so a
// suggested command can be copied.
func writeWrapped(w io.Writer, first, rest, text string) {
	line := first
	empty := true
	for _, word := range splitKeepingCode(text) {
		if !empty && len(line)+1+len(word) > textWidth {
			fmt.Fprintln(w, line)
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	fmt.Fprintln(w, line)
}

// splitKeepingCode splits text at blanks, except inside `...`.
func splitKeepingCode(text string) []string {
	var words []string
	var cur strings.Builder
	inCode := false
	for _, r := range text {
		switch {
		case r == '`':
			inCode = !inCode
			cur.WriteRune(r)
		case r == ' ' && !inCode:
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}
