package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// matrixFormats are the formats of the cross-format matrix, with the custom
// format's headers as the test configures them.
var matrixFormats = []string{"w3c", "b3", "b3single", "sw8", "sw6", "jaeger", "ot", "xray", "datadog", "custom"}

const matrixCustom = "custom trace_id X-Trace-Id span_id X-Span-Id sampled X-Sampled"

// matrixCodec builds a codec as the module does, so the test reads and
// writes exactly the module's formats.
func matrixCodec(t *testing.T, name string) headers.Codec {
	t.Helper()
	p := &Propagation{Custom: &CustomHeaders{TraceID: "X-Trace-Id", SpanID: "X-Span-Id", Sampled: "X-Sampled"}}
	cs, err := p.codecs([]string{name})
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// carriesDebug are the formats that have a debug flag.
var carriesDebug = map[string]bool{"b3": true, "b3single": true, "jaeger": true}

// TestCrossFormatMatrix sends a caller's context in every format and checks
// that every injected format names the same trace, carries the sampling
// decision, and makes our CLIENT span the parent; Zipkin's CLIENT span has
// that id.
func TestCrossFormatMatrix(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	traceID := headers.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	caller := headers.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}

	for _, from := range matrixFormats {
		for _, debug := range []bool{false, true} {
			if debug && !carriesDebug[from] {
				continue
			}
			name := from
			if debug {
				name += "/debug"
			}
			t.Run(name, func(t *testing.T) {
				startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract %s
			inject %s
			%s
		}
		exporter zipkin %s {
			flush_interval 10ms
		}
	}
	reverse_proxy %s`, from, strings.Join(matrixFormats, " "), matrixCustom, c.URL(), up.hostport()))

				in := headers.SpanContext{TraceID: traceID, SpanID: caller, Sampling: headers.SamplingAccept}
				if debug {
					in.Sampling = headers.SamplingDebug
				}
				if from == "sw8" || from == "sw6" {
					in.SW = headers.SkyWalking{TraceID: traceID.String(), SegmentID: "caller-segment", SpanID: 2,
						Service: "frontend", Instance: "frontend-1", Endpoint: "/checkout", Address: "proxy:8080"}
				}
				var w headers.Writer
				matrixCodec(t, from).Inject(&in, &w)
				hdr := http.Header{}
				w.Apply(hdr)
				res, _ := get(t, "/matrix", hdr)
				if res.StatusCode != 200 {
					t.Fatalf("status %d", res.StatusCode)
				}
				seen := up.last(t)

				var clientID headers.SpanID
				for _, to := range matrixFormats {
					var out headers.SpanContext
					if err := matrixCodec(t, to).Extract(seen, &out); err != nil {
						t.Errorf("%s → %s: upstream's %s headers do not parse: %v (%v)", from, to, to, err, seen)
						continue
					}
					if out.TraceID != traceID {
						t.Errorf("%s → %s: trace %s, want %s", from, to, out.TraceID, traceID)
					}
					if out.SpanID == caller || !out.SpanID.IsValid() {
						t.Errorf("%s → %s: parent span %s, want our CLIENT span", from, to, out.SpanID)
					}
					if clientID.IsValid() && out.SpanID != clientID {
						t.Errorf("%s → %s: parent span %s, other formats say %s", from, to, out.SpanID, clientID)
					}
					clientID = out.SpanID
					wantSampling := headers.SamplingAccept
					if debug && carriesDebug[to] {
						wantSampling = headers.SamplingDebug
					}
					if out.Sampling != wantSampling {
						t.Errorf("%s → %s: sampling %s, want %s", from, to, out.Sampling, wantSampling)
					}
				}
				testutil.Eventually(t, 5*time.Second, "Zipkin CLIENT span "+clientID.String(), func() bool {
					for _, s := range c.Spans() {
						if *s.Kind == "CLIENT" && s.ID == clientID.String() && s.TraceID == traceID.String() {
							return true
						}
					}
					return false
				})
			})
		}
	}
}
