package scoid

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical serializes v as RFC 8785 JSON Canonicalization Scheme text: object members
// sorted by the UTF-16 code units of their names, no insignificant whitespace, strings
// escaped as ECMAScript's JSON.stringify does, numbers in ECMAScript's shortest form.
//
// v may hold nil, bool, string, json.Number, float64, float32, the Go integer types,
// []any, []string, map[string]any and map[string]string. Strings must be valid UTF-8
// and numbers finite; integers beyond ±2^53 are refused because JCS numbers are IEEE
// doubles.
func Canonical(v any) ([]byte, error) {
	b, err := appendValue(nil, v)
	if err != nil {
		return nil, err
	}
	return b, nil
}

const maxExactInt = 1 << 53

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return appendString(b, x)
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("jcs: number %q: %w", x, err)
		}
		return appendNumber(b, f)
	case float64:
		return appendNumber(b, x)
	case float32:
		return appendNumber(b, float64(x))
	case int:
		return appendInt(b, int64(x))
	case int8:
		return appendInt(b, int64(x))
	case int16:
		return appendInt(b, int64(x))
	case int32:
		return appendInt(b, int64(x))
	case int64:
		return appendInt(b, x)
	case uint:
		return appendUint(b, uint64(x))
	case uint8:
		return appendUint(b, uint64(x))
	case uint16:
		return appendUint(b, uint64(x))
	case uint32:
		return appendUint(b, uint64(x))
	case uint64:
		return appendUint(b, x)
	case []string:
		b = append(b, '[')
		for i, s := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendString(b, s); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return appendObject(b, m)
	case map[string]any:
		return appendObject(b, x)
	default:
		return nil, fmt.Errorf("jcs: unsupported type %T", v)
	}
}

func appendObject(b []byte, m map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendString(b, k); err != nil {
			return nil, err
		}
		b = append(b, ':')
		if b, err = appendValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// compareUTF16 orders strings by their UTF-16 code units (RFC 8785 section 3.2.3).
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func appendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("jcs: string %q is not valid UTF-8", s)
	}
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), nil
}

func appendInt(b []byte, x int64) ([]byte, error) {
	if x > maxExactInt || x < -maxExactInt {
		return nil, fmt.Errorf("jcs: integer %d is not exact as an IEEE double", x)
	}
	return strconv.AppendInt(b, x, 10), nil
}

func appendUint(b []byte, x uint64) ([]byte, error) {
	if x > maxExactInt {
		return nil, fmt.Errorf("jcs: integer %d is not exact as an IEEE double", x)
	}
	return strconv.AppendUint(b, x, 10), nil
}

// appendNumber writes f as ECMAScript's Number.prototype.toString does (ECMA-262
// Number::toString, the form RFC 8785 section 3.2.2.3 requires).
func appendNumber(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("jcs: %v is not a JSON number", f)
	}
	if f == 0 { // also -0
		return append(b, '0'), nil
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	// Shortest round-trip digits d1.d2...dk and exponent e, so f = 0.d1...dk × 10^n.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, err := strconv.Atoi(exp)
	if err != nil {
		return nil, fmt.Errorf("jcs: format %v: %w", f, err)
	}
	k, n := len(digits), x+1
	switch {
	case k <= n && n <= 21:
		b = append(b, digits...)
		b = append(b, strings.Repeat("0", n-k)...)
	case 0 < n && n <= 21:
		b = append(b, digits[:n]...)
		b = append(b, '.')
		b = append(b, digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, "0."...)
		b = append(b, strings.Repeat("0", -n)...)
		b = append(b, digits...)
	default:
		b = append(b, digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b, nil
}
