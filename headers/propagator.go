package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Format names one wire format of trace context.
type Format uint8

// The wire formats. Their names (String) are the ones used in configuration.
const (
	FormatNone          Format = iota
	FormatW3C                  // traceparent + tracestate
	FormatB3                   // X-B3-* multi headers (extraction also reads b3)
	FormatB3Single             // b3 single header (extraction also reads X-B3-*)
	FormatSW8                  // SkyWalking v3 sw8
	FormatSW6                  // SkyWalking v2 sw6
	FormatJaeger               // uber-trace-id
	FormatOT                   // ot-tracer-*
	FormatBaggage              // W3C baggage
	FormatXRay                 // X-Amzn-Trace-Id
	FormatDatadog              // x-datadog-*
	FormatRequestID            // X-Request-ID
	FormatCustom               // operator-named headers
	FormatPrefixBaggage        // operator-prefixed baggage headers, {prefix}{key}
	numFormats
)

var formatNames = [numFormats]string{
	FormatNone:      "none",
	FormatW3C:       "w3c",
	FormatB3:        "b3",
	FormatB3Single:  "b3single",
	FormatSW8:       "sw8",
	FormatSW6:       "sw6",
	FormatJaeger:    "jaeger",
	FormatOT:        "ot",
	FormatBaggage:   "baggage",
	FormatXRay:      "xray",
	FormatDatadog:   "datadog",
	FormatRequestID: "requestid",
	FormatCustom:    "custom",
	// FormatPrefixBaggage needs its prefix: NewPrefixBaggageCodec.
	FormatPrefixBaggage: "prefix_baggage",
}

// String returns the configuration name of the format.
func (f Format) String() string {
	if f < numFormats {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// ParseFormat returns the format with the given configuration name.
func ParseFormat(name string) (Format, error) {
	for f := FormatW3C; f < numFormats; f++ {
		if formatNames[f] == name {
			return f, nil
		}
	}
	return FormatNone, fmt.Errorf("%w %q (known: %s)", ErrUnknownFormat, name, strings.Join(FormatNames(), ", "))
}

// FormatNames lists the configuration names of the formats that have a codec.
func FormatNames() []string {
	var names []string
	for f := FormatW3C; f < numFormats; f++ {
		if codecs[f] != nil {
			names = append(names, formatNames[f])
		}
	}
	return names
}

// FormatSet is a set of formats.
type FormatSet uint32

// Add returns the set with f added.
func (s FormatSet) Add(f Format) FormatSet { return s | 1<<f }

// Has reports whether f is in the set.
func (s FormatSet) Has(f Format) bool { return s&(1<<f) != 0 }

// String lists the formats in the set, comma-separated.
func (s FormatSet) String() string {
	var b strings.Builder
	for f := FormatW3C; f < numFormats; f++ {
		if s.Has(f) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(formatNames[f])
		}
	}
	return b.String()
}

// Errors shared by the codecs. Each codec adds its own sentinels; all of them
// wrap or are compared with errors.Is.
var (
	// ErrAbsent means the format's headers are not in the request.
	ErrAbsent = errors.New("trace context absent")
	// ErrMalformedID is an id of the wrong length or with non-hex digits.
	ErrMalformedID = errors.New("malformed id")
	// ErrZeroID is an all-zero trace or span id.
	ErrZeroID = errors.New("all-zero id")
	// ErrUnknownFormat is a format name no codec implements.
	ErrUnknownFormat = errors.New("unknown propagation format")
)

// Codec reads and writes one wire format.
type Codec interface {
	// Format names the wire format.
	Format() Format
	// Fields lists the canonical header names the format owns. The
	// Propagator removes them from a request before injecting, so no stale
	// or malformed value reaches the upstream.
	Fields() []string
	// Extract reads the caller's context from h into sc. It returns
	// ErrAbsent when none of the format's headers is present and a
	// descriptive sentinel error when they are malformed; sc is then left in
	// an unspecified state. Extract must not allocate on valid or invalid
	// input, except where a format documents one buffer for decoded strings.
	Extract(h http.Header, sc *SpanContext) error
	// Inject writes sc in this format. It allocates at most one string per
	// header it writes.
	Inject(sc *SpanContext, w *Writer)
}

// Merger is implemented by a codec whose headers travel alongside a trace
// context instead of carrying one: W3C baggage, a request id. NewPropagator
// detects it, and Propagator.Extract does not let it compete for precedence:
// after the trace-context codecs have chosen a winner, it calls Merge of
// every Merger, in configured order, on the winning context (or on an empty
// one when no format won), so what it reads is added whichever format won.
type Merger interface {
	Codec
	// Merge reads the codec's headers from h and adds what they carry to sc,
	// leaving sc's trace fields as they are. It returns ErrAbsent when its
	// headers are absent and a sentinel error when they are malformed; unlike
	// Extract it may still have added to sc then (the valid members of a
	// partly invalid baggage list, a generated request id), and sc is kept.
	// Like Extract it must not allocate, except where the codec documents
	// one string.
	Merge(h http.Header, sc *SpanContext) error
}

// codecs holds one constructor per format; each codec's file registers its own
// in init.
var codecs [numFormats]func() Codec

func register(f Format, newCodec func() Codec) { codecs[f] = newCodec }

// NewCodec returns the codec for a format that needs no configuration.
func NewCodec(f Format) (Codec, error) {
	if f >= numFormats || codecs[f] == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownFormat, f)
	}
	return codecs[f](), nil
}

// maxWrites bounds the headers one injection can write: 32 for the trace
// headers of every format, plus one per baggage member (at most 64) for each
// of the three formats that write a header per member (Jaeger uberctx-*,
// OpenTracing ot-baggage-*, an operator's prefix).
const maxWrites = 32 + 3*baggageMaxMembers

// Writer collects the headers that codecs inject, so that they can be applied
// to an http.Header with one allocation for all value slices and one for all
// values that codecs build (see Buffer).
type Writer struct {
	n   int
	kv  [maxWrites]written
	buf []byte
}

// written is one recorded header: a string value, or the bytes
// buf[start:end] of a value a codec built in the writer's buffer.
type written struct {
	key, value string
	start, end int
	built      bool
}

// Set records header key (canonical form) with value. A later Set of the same
// key replaces the earlier one. Writes beyond the writer's capacity are
// dropped.
func (w *Writer) Set(key, value string) { w.record(written{key: key, value: value}) }

// Buffer returns the writer's value buffer for a codec to append one header
// value to; the codec then passes the grown buffer to SetBuilt. Values built
// this way cost no allocation each: Apply turns the whole buffer into one
// string.
func (w *Writer) Buffer() []byte { return w.buf }

// SetBuilt records header key with the bytes appended to Buffer's result
// since it was returned; buf is that grown buffer.
func (w *Writer) SetBuilt(key string, buf []byte) {
	start := len(w.buf)
	w.buf = buf
	w.record(written{key: key, start: start, end: len(buf), built: true})
}

func (w *Writer) record(e written) {
	for i := 0; i < w.n; i++ {
		if w.kv[i].key == e.key {
			w.kv[i] = e
			return
		}
	}
	if w.n < maxWrites {
		w.kv[w.n] = e
		w.n++
	}
}

// Len returns the number of headers recorded.
func (w *Writer) Len() int { return w.n }

// Get returns the value recorded for key.
func (w *Writer) Get(key string) (string, bool) {
	for i := 0; i < w.n; i++ {
		if e := &w.kv[i]; e.key == key {
			if e.built {
				return string(w.buf[e.start:e.end]), true
			}
			return e.value, true
		}
	}
	return "", false
}

// Apply sets every recorded header on h, replacing existing values.
func (w *Writer) Apply(h http.Header) {
	if w.n == 0 {
		return
	}
	var built string
	if len(w.buf) > 0 {
		built = string(w.buf)
	}
	vals := make([]string, w.n)
	for i := 0; i < w.n; i++ {
		e := &w.kv[i]
		if e.built {
			vals[i] = built[e.start:e.end]
		} else {
			vals[i] = e.value
		}
		h[e.key] = vals[i : i+1 : i+1]
	}
}

// Reset empties the writer, keeping its buffer for reuse and dropping its
// references to the values it held.
func (w *Writer) Reset() {
	clear(w.kv[:w.n])
	w.n = 0
	w.buf = w.buf[:0]
}

// Result is what Propagator.Extract found in a request.
type Result struct {
	// SpanContext is the caller's context. Its trace fields are zero when
	// Format is FormatNone; Baggage and RequestID, which Merger codecs add,
	// may be set whatever the Format. A sampling-only input (b3: 0) yields
	// a context with a Sampling state and no ids: see SpanContext.HasIDs.
	SpanContext
	// Format is the format the context came from, FormatNone when no
	// configured format carried a valid context.
	Format Format
	// Present is the set of configured formats whose headers were in the
	// request, valid or not.
	Present FormatSet
	// Malformed is the set of formats whose headers were present but
	// invalid; they were treated as absent.
	Malformed FormatSet
	// Err is the error of the first malformed format, for a debug log line.
	Err error
	// Conflict is a lower-precedence format whose valid context names a
	// different trace than the winner, FormatNone when all agree.
	Conflict Format
	// ConflictTraceID is the trace id Conflict carried.
	ConflictTraceID TraceID
}

// Propagator extracts trace context in a configured order of precedence and
// injects it in a configured set of formats. It is safe for concurrent use.
type Propagator struct {
	extract  []Codec
	contexts []Codec  // the codecs of extract that compete for precedence
	mergers  []Merger // the codecs of extract that merge into the winner
	inject   []Codec
	fields   []string
}

// NewPropagator builds a propagator. The first codec of extract that finds a
// valid context wins; codecs that implement Merger do not compete but add to
// the winning context (see Merger). Every codec of inject writes.
func NewPropagator(extract, inject []Codec) *Propagator {
	p := &Propagator{extract: extract, inject: inject}
	for _, c := range extract {
		if m, ok := c.(Merger); ok {
			p.mergers = append(p.mergers, m)
		} else {
			p.contexts = append(p.contexts, c)
		}
	}
	seen := map[string]bool{}
	for _, list := range [][]Codec{extract, inject} {
		for _, c := range list {
			for _, f := range c.Fields() {
				if !seen[f] {
					seen[f] = true
					p.fields = append(p.fields, f)
				}
			}
		}
	}
	return p
}

// Codecs returns the codecs for the named formats, in order, refusing unknown
// or repeated names.
func Codecs(names []string) ([]Codec, error) {
	var out []Codec
	var seen FormatSet
	for _, n := range names {
		f, err := ParseFormat(n)
		if err != nil {
			return nil, err
		}
		if seen.Has(f) {
			return nil, fmt.Errorf("format %q listed twice", n)
		}
		seen = seen.Add(f)
		c, err := NewCodec(f)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ExtractFormats returns the formats extracted, in order of precedence.
func (p *Propagator) ExtractFormats() []Format { return formatsOf(p.extract) }

// InjectFormats returns the formats injected.
func (p *Propagator) InjectFormats() []Format { return formatsOf(p.inject) }

func formatsOf(cs []Codec) []Format {
	out := make([]Format, len(cs))
	for i, c := range cs {
		out[i] = c.Format()
	}
	return out
}

// Fields returns every header name the propagator's formats own.
func (p *Propagator) Fields() []string { return p.fields }

// extractScratch holds the SpanContext each codec extracts into. Codecs are
// called through an interface, so a local SpanContext would escape to the
// heap on every Extract; reusing pooled ones keeps extraction
// allocation-free.
var extractScratch = sync.Pool{New: func() any { return new(SpanContext) }}

// Extract reads the caller's context from h. It never fails: malformed
// formats are reported in the Result and treated as absent.
func (p *Propagator) Extract(h http.Header) Result {
	var res Result
	sc := extractScratch.Get().(*SpanContext)
	for _, c := range p.contexts {
		*sc = SpanContext{}
		err := c.Extract(h, sc)
		if err == ErrAbsent {
			continue
		}
		f := c.Format()
		res.Present = res.Present.Add(f)
		if err != nil {
			res.Malformed = res.Malformed.Add(f)
			if res.Err == nil {
				res.Err = err
			}
			continue
		}
		if res.Format == FormatNone {
			res.SpanContext = *sc
			res.Format = f
			continue
		}
		if res.Conflict == FormatNone && sc.TraceID.IsValid() && res.TraceID.IsValid() && sc.TraceID != res.TraceID {
			res.Conflict = f
			res.ConflictTraceID = sc.TraceID
		}
	}
	if len(p.mergers) > 0 {
		*sc = res.SpanContext
		for _, m := range p.mergers {
			err := m.Merge(h, sc)
			if err == ErrAbsent {
				continue
			}
			f := m.Format()
			res.Present = res.Present.Add(f)
			if err != nil {
				res.Malformed = res.Malformed.Add(f)
				if res.Err == nil {
					res.Err = err
				}
			}
		}
		res.SpanContext = *sc
	}
	*sc = SpanContext{} // drop references into h before pooling
	extractScratch.Put(sc)
	return res
}

// Clear removes every header the propagator's formats own from h.
func (p *Propagator) Clear(h http.Header) {
	for _, f := range p.fields {
		delete(h, f)
	}
}

// Inject writes sc in every configured format into w.
func (p *Propagator) Inject(sc *SpanContext, w *Writer) {
	for _, c := range p.inject {
		c.Inject(sc, w)
	}
}

// InjectSet writes sc in those configured formats that are in set, for a
// per-request choice of formats (inject preserve).
func (p *Propagator) InjectSet(sc *SpanContext, w *Writer, set FormatSet) {
	for _, c := range p.inject {
		if set.Has(c.Format()) {
			c.Inject(sc, w)
		}
	}
}
