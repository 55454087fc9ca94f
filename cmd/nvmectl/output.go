package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// record is an ordered set of fields printed either as "key : value"
// lines (normal) or as one JSON object with the keys in order.
type record []field

type field struct {
	key  string
	val  any    // JSON value
	text string // normal-output value; "" means fmt %v of val
}

func (r *record) add(key string, val any, text ...string) {
	f := field{key: key, val: val}
	if len(text) > 0 {
		f.text = text[0]
	}
	*r = append(*r, f)
}

// hex adds an integer shown in hex in normal output, a number in JSON
// (as nvme-cli does).
func (r *record) hex(key string, v uint64) { r.add(key, v, fmt.Sprintf("%#x", v)) }

// MarshalJSON writes the fields as an object in order.
func (r record) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(f.val)
		if err != nil {
			return nil, fmt.Errorf("json %s: %w", f.key, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeText prints "key : value" lines, keys padded like nvme-cli's.
func (r record) writeText(w io.Writer) error {
	width := 9
	for _, f := range r {
		width = max(width, len(f.key))
	}
	for _, f := range r {
		t := f.text
		if t == "" {
			t = fmt.Sprint(f.val)
		}
		if _, err := fmt.Fprintf(w, "%-*s : %s\n", width, f.key, t); err != nil {
			return err
		}
	}
	return nil
}

// u128 is a 128-bit counter that marshals as a JSON number.
type u128 spec.Uint128

func (u u128) MarshalJSON() ([]byte, error) { return []byte(spec.Uint128(u).String()), nil }
func (u u128) String() string               { return spec.Uint128(u).String() }

// writeJSON prints v indented, ending with a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// emit prints r in the chosen format, with title above it in normal output.
func emit(w io.Writer, g *globals, title string, r record) error {
	if g.out == formatJSON {
		return writeJSON(w, r)
	}
	if title != "" {
		fmt.Fprintln(w, title)
	}
	return r.writeText(w)
}

// humanBytes formats n with binary units, compact: "1GiB", "16MiB",
// "1.5KiB" (go-humanize's IBytes, without its space and trailing ".0").
func humanBytes(n uint64) string {
	s := strings.ReplaceAll(humanize.IBytes(n), " ", "")
	if i := strings.Index(s, ".0"); i >= 0 && (i+2 == len(s) || s[i+2] < '0' || s[i+2] > '9') {
		s = s[:i] + s[i+2:]
	}
	return s
}

// bits lists the names of the set bits of v, for -H.
func bits(v uint64, names map[uint]string) string {
	var out []string
	for i := uint(0); i < 64; i++ {
		if v&(1<<i) == 0 {
			continue
		}
		if n, ok := names[i]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("bit%d", i))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
