package sampler

import (
	"encoding/binary"
	"net/http"
	"testing"

	zipkin "github.com/openzipkin/zipkin-go"
	"golang.org/x/time/rate"

	"github.com/tracingproxy/tracingproxy/headers"
)

// sink and clockSink keep the compiler from discarding results.
var (
	sink      Decision
	clockSink int64
)

func benchDecide(b *testing.B, s Sampler, p *Params) {
	b.ReportAllocs()
	for b.Loop() {
		sink = s.ShouldSample(p)
	}
}

func BenchmarkAlways(b *testing.B) { benchDecide(b, Always(), &Params{}) }

func BenchmarkRatio(b *testing.B) {
	benchDecide(b, Ratio(0.1), &Params{TraceID: headers.NewTraceID()})
}

// BenchmarkZipkinBoundarySampler is the reference: zipkin-go's trace-id
// sampler, the nearest library equivalent of Ratio.
func BenchmarkZipkinBoundarySampler(b *testing.B) {
	s, err := zipkin.NewBoundarySampler(0.1, 42)
	if err != nil {
		b.Fatal(err)
	}
	p := Params{TraceID: headers.NewTraceID()}
	b.ReportAllocs()
	for b.Loop() {
		sink.Sample = s(binary.BigEndian.Uint64(p.TraceID[8:]))
	}
}

func BenchmarkParentBased(b *testing.B) {
	s := ParentBased(Ratio(0.1))
	b.Run("new root", func(b *testing.B) { benchDecide(b, s, &Params{TraceID: headers.NewTraceID()}) })
	b.Run("parent accept", func(b *testing.B) { benchDecide(b, s, &Params{Parent: headers.SamplingAccept}) })
	b.Run("forced", func(b *testing.B) { benchDecide(b, s, &Params{Forced: true}) })
}

func BenchmarkRateLimited(b *testing.B) {
	// admit: a rate far above the loop's, so (nearly) every call is admitted
	// and writes the state; refuse: the burst is spent, calls only read.
	admit := func() Sampler { return RateLimited(Always(), 1e9/2, WithBurst(1<<20)) }
	refuse := func() Sampler {
		s := RateLimited(Always(), 1e-3)
		s.ShouldSample(&Params{})
		return s
	}
	b.Run("admit", func(b *testing.B) { benchDecide(b, admit(), &Params{}) })
	b.Run("refuse", func(b *testing.B) { benchDecide(b, refuse(), &Params{}) })
	parallel := func(b *testing.B, s Sampler) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var p Params
			for pb.Next() {
				s.ShouldSample(&p)
			}
		})
	}
	b.Run("admit parallel", func(b *testing.B) { parallel(b, admit()) })
	b.Run("refuse parallel", func(b *testing.B) { parallel(b, refuse()) })
}

// BenchmarkXTimeRate is the reference: golang.org/x/time/rate's
// mutex-guarded token bucket, in the same two states.
func BenchmarkXTimeRate(b *testing.B) {
	admit := func() *rate.Limiter { return rate.NewLimiter(1e9/2, 1<<20) }
	refuse := func() *rate.Limiter {
		l := rate.NewLimiter(1e-3, 1)
		l.Allow()
		return l
	}
	single := func(b *testing.B, l *rate.Limiter) {
		b.ReportAllocs()
		for b.Loop() {
			sink.Sample = l.Allow()
		}
	}
	parallel := func(b *testing.B, l *rate.Limiter) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	}
	b.Run("admit", func(b *testing.B) { single(b, admit()) })
	b.Run("refuse", func(b *testing.B) { single(b, refuse()) })
	b.Run("admit parallel", func(b *testing.B) { parallel(b, admit()) })
	b.Run("refuse parallel", func(b *testing.B) { parallel(b, refuse()) })
}

func BenchmarkRules(b *testing.B) {
	s := benchRules(b)
	last := newRequest(http.MethodGet, "http://shop.example.com/api/v2/orders/7", "X-Tenant", "acme")
	none := newRequest(http.MethodPost, "http://shop.example.org/cart/items", "X-Tenant", "acme")
	b.Run("match first", func(b *testing.B) {
		benchDecide(b, s, &Params{Request: newRequest(http.MethodGet, "http://shop.example.com/health/live")})
	})
	b.Run("match last", func(b *testing.B) { benchDecide(b, s, &Params{TraceID: headers.NewTraceID(), Request: last}) })
	b.Run("no match", func(b *testing.B) { benchDecide(b, s, &Params{TraceID: headers.NewTraceID(), Request: none}) })
}

// BenchmarkDefaultClock is the cost of one reading of the limiter's clock,
// a part of every RateLimited decision.
func BenchmarkDefaultClock(b *testing.B) {
	for b.Loop() {
		clockSink = monotonic()
	}
}
