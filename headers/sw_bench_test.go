package headers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// refSW8 is a reference-style sw8 codec: a re-implementation, written for
// these tests, of the approach of github.com/apache/skywalking-go
// plugins/core/propagating.go (SpanContext.DecodeSW8 / EncodeSW8):
// strings.Split on "-", base64.StdEncoding.DecodeString per field into its
// own string, strconv.ParseInt with base 0, EncodeToString per field and
// strings.Join. That package cannot be imported here: it is the separate
// module github.com/apache/skywalking-go/plugins/core, whose package core is
// the agent runtime (tracer, gRPC and Kafka reporters, profiler). The tests
// use refSW8 as an interop oracle for the encoding formula and the
// benchmarks as the baseline.
type refSW8 struct {
	Sample                int8
	TraceID               string
	ParentSegmentID       string
	ParentSpanID          int32
	ParentService         string
	ParentServiceInstance string
	ParentEndpoint        string
	AddressUsedAtClient   string
}

var errRefSW8 = errors.New("reference sw8: insufficient header entities")

// Decode parses an sw8 value the way the reference does: it accepts more
// than 8 fields, empty base64 fields and numbers in any base ParseInt's base
// 0 knows.
func (r *refSW8) Decode(header string) error {
	if header == "" {
		return errRefSW8
	}
	hh := strings.Split(header, "-")
	if len(hh) < 8 {
		return fmt.Errorf("%w: %s", errRefSW8, header)
	}
	sample, err := strconv.ParseInt(hh[0], 10, 8)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	r.Sample = int8(sample)
	for i, dst := range []*string{nil, &r.TraceID, &r.ParentSegmentID, nil, &r.ParentService,
		&r.ParentServiceInstance, &r.ParentEndpoint, &r.AddressUsedAtClient} {
		switch i {
		case 0:
			continue
		case 3:
			span, err := strconv.ParseInt(hh[3], 0, 32)
			if err != nil {
				return fmt.Errorf("parent span id: %w", err)
			}
			r.ParentSpanID = int32(span)
			continue
		}
		b, err := base64.StdEncoding.DecodeString(hh[i])
		if err != nil {
			return fmt.Errorf("field %d: %w", i, err)
		}
		*dst = string(b)
	}
	return nil
}

// Encode builds an sw8 value with the reference formula: every string field
// base64 (standard, padded), the numbers in decimal, joined with "-".
func (r *refSW8) Encode() string {
	enc := base64.StdEncoding.EncodeToString
	return strings.Join([]string{
		strconv.Itoa(int(r.Sample)),
		enc([]byte(r.TraceID)),
		enc([]byte(r.ParentSegmentID)),
		strconv.Itoa(int(r.ParentSpanID)),
		enc([]byte(r.ParentService)),
		enc([]byte(r.ParentServiceInstance)),
		enc([]byte(r.ParentEndpoint)),
		enc([]byte(r.AddressUsedAtClient)),
	}, "-")
}

// benchSW8 is a typical agent-written sw8 value.
var benchSW8 = (&refSW8{
	Sample:                1,
	TraceID:               "9f2c2d3b4e5a46c7b8d9e0f1a2b3c4d5.62.17300000000000001",
	ParentSegmentID:       "9f2c2d3b4e5a46c7b8d9e0f1a2b3c4d5.62.17300000000000000",
	ParentSpanID:          3,
	ParentService:         "orders",
	ParentServiceInstance: "b1c9e0a2d3f44e5f@10.0.3.17",
	ParentEndpoint:        "GET:/api/v1/orders/{id}",
	AddressUsedAtClient:   "inventory.default.svc:8080",
}).Encode()

// benchSW8Bogus is malformed in the last field, so a parser does all the
// work before rejecting it.
var benchSW8Bogus = benchSW8[:len(benchSW8)-4] + "*==="

func sw8Headers() map[string]http.Header {
	return map[string]http.Header{
		"valid":   {headerSW8: {benchSW8}},
		"missing": {"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		"bogus":   {headerSW8: {benchSW8Bogus}},
	}
}

var benchSC SpanContext

func BenchmarkSW8Extract(b *testing.B) {
	c := sw8Codec{}
	hs := sw8Headers()
	for _, name := range []string{"valid", "missing", "bogus"} {
		h := hs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Extract(h, &benchSC)
			}
		})
	}
}

// BenchmarkSW8ExtractReferenceStyle is the baseline for BenchmarkSW8Extract:
// refSW8 reading the header as the reference agent's HTTP plugin does.
func BenchmarkSW8ExtractReferenceStyle(b *testing.B) {
	hs := sw8Headers()
	for _, name := range []string{"valid", "missing", "bogus"} {
		h := hs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var r refSW8
			for b.Loop() {
				if v := h.Get("sw8"); v != "" {
					_ = r.Decode(v)
				}
			}
		})
	}
}

func benchInjectContext() SpanContext {
	var sc SpanContext
	if err := parseSW8(benchSW8, &sc); err != nil {
		panic(err)
	}
	sc.SW.SegmentID = "0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5.17.17300000000000042"
	sc.SW.SpanID = 1
	return sc
}

func BenchmarkSW8Inject(b *testing.B) {
	sc := benchInjectContext()
	c := sw8Codec{}
	var w Writer
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		c.Inject(&sc, &w)
	}
}

// BenchmarkSW8InjectReferenceStyle is the baseline for BenchmarkSW8Inject.
func BenchmarkSW8InjectReferenceStyle(b *testing.B) {
	sc := benchInjectContext()
	r := refSW8{1, sc.SW.TraceID, sc.SW.SegmentID, sc.SW.SpanID, sc.SW.Service, sc.SW.Instance,
		sc.SW.Endpoint, sc.SW.Address}
	var w Writer
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		w.Set(headerSW8, r.Encode())
	}
}

func BenchmarkSW6Extract(b *testing.B) {
	var sc SpanContext
	sc.TraceID = NewTraceID()
	sc.SW = SkyWalking{SegmentID: "1.2.3", SpanID: 1, Instance: "5", Endpoint: "/api/orders", Address: "10.0.0.1:80"}
	v, ok := encodeSW6(&sc)
	if !ok {
		b.Fatal("encodeSW6 wrote nothing")
	}
	h := http.Header{headerSW6: {v}}
	c := sw6Codec{}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Extract(h, &benchSC)
	}
}

func BenchmarkTraceIDFromSW(b *testing.B) {
	for _, bc := range []struct{ name, id string }{
		{"hex", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"agent", "9f2c2d3b4e5a46c7b8d9e0f1a2b3c4d5.62.17300000000000001"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchSC.TraceID, _ = TraceIDFromSW(bc.id)
			}
		})
	}
}
