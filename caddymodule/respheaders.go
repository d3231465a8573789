package caddymodule

import (
	"net/http"
	"strings"
)

// sentHeaders are the trace header values a request's response was given,
// "" for those not configured.
type sentHeaders struct {
	serverTiming, traceResponse, traceID, traceURL string
}

// settle leaves one answer per trace header we set on the response, just
// before its status is sent: the upstream copies its own response headers
// next to ours, and a client reading X-Trace-Id or traceresponse must not
// get two. Ours replace the upstream's unless upstream_wins is set; then
// ours go wherever the upstream sent its own. Server-Timing is a list: only
// its "trace" metric is settled, the upstream's other metrics stay.
func (rh *ResponseHeaders) settle(hdr http.Header, s *sentHeaders) {
	if s.traceResponse != "" {
		settleSingle(hdr, "Traceresponse", s.traceResponse, rh.UpstreamWins)
	}
	if s.traceID != "" {
		settleSingle(hdr, http.CanonicalHeaderKey(rh.TraceID), s.traceID, rh.UpstreamWins)
	}
	if s.traceURL != "" {
		settleSingle(hdr, http.CanonicalHeaderKey(rh.TraceURL.Header), s.traceURL, rh.UpstreamWins)
	}
	if s.serverTiming != "" {
		settleServerTiming(hdr, s.serverTiming, rh.UpstreamWins)
	}
}

// settleSingle leaves one value of a single-valued header. A header that no
// longer holds our value (another handler replaced or removed it) is left
// as it is.
func settleSingle(hdr http.Header, key, ours string, upstreamWins bool) {
	vs := hdr[key]
	if len(vs) < 2 {
		return
	}
	i := indexOf(vs, ours)
	switch {
	case i < 0:
	case upstreamWins:
		hdr[key] = append(vs[:i:i], vs[i+1:]...)
	default:
		hdr[key] = vs[i : i+1]
	}
}

// settleServerTiming leaves one "trace" metric in Server-Timing: ours, or,
// under upstream_wins, the upstream's when it sent one.
func settleServerTiming(hdr http.Header, ours string, upstreamWins bool) {
	const key = "Server-Timing"
	vs := hdr[key]
	if len(vs) < 2 {
		return
	}
	i := indexOf(vs, ours)
	if i < 0 {
		return
	}
	theirs := false
	for j, v := range vs {
		if j != i && hasTraceMetric(v) {
			theirs = true
			break
		}
	}
	if !theirs {
		return // the upstream's metrics are others: all of them stay
	}
	if upstreamWins {
		hdr[key] = append(vs[:i:i], vs[i+1:]...)
		return
	}
	kept := make([]string, 0, len(vs))
	for j, v := range vs {
		if j != i {
			if v = withoutTraceMetric(v); v == "" {
				continue
			}
		}
		kept = append(kept, v)
	}
	hdr[key] = kept
}

func indexOf(vs []string, v string) int {
	for i, s := range vs {
		if s == v {
			return i
		}
	}
	return -1
}

// serverTimingMetrics splits a Server-Timing value into its metrics, minding
// quoted desc strings that hold commas.
func serverTimingMetrics(v string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// metricName is a Server-Timing metric's name, the token before its
// parameters.
func metricName(m string) string {
	name, _, _ := strings.Cut(m, ";")
	return strings.TrimSpace(name)
}

func hasTraceMetric(v string) bool {
	for _, m := range serverTimingMetrics(v) {
		if strings.EqualFold(metricName(m), "trace") {
			return true
		}
	}
	return false
}

// withoutTraceMetric is v less its "trace" metrics; "" when nothing else is
// left.
func withoutTraceMetric(v string) string {
	ms := serverTimingMetrics(v)
	kept := ms[:0]
	for _, m := range ms {
		if !strings.EqualFold(metricName(m), "trace") && strings.TrimSpace(m) != "" {
			kept = append(kept, strings.TrimSpace(m))
		}
	}
	return strings.Join(kept, ", ")
}

// setResponseHeaders tells the client which trace it belongs to and reports
// whether it set anything. It runs before next so the headers are there
// whatever the upstream does; what it set is kept in t.resp, for
// statusRecorder to settle against the upstream's headers of the same names.
func (h *Handler) setResponseHeaders(w http.ResponseWriter, t *hop) bool {
	rh := h.ResponseHeaders
	if rh == nil || !t.trusted && !rh.ToUntrusted {
		return false
	}
	hdr := w.Header()
	if rh.ServerTiming || rh.TraceResponse {
		// 00-<32 hex>-<16 hex>-<2 hex>, naming our SERVER span.
		const prefix = "trace;desc="
		var b [len(prefix) + 55]byte
		buf := append(b[:0], prefix...)
		buf = append(buf, "00-"...)
		buf = t.out.TraceID.AppendHex(buf)
		buf = append(buf, '-')
		buf = t.serverID.AppendHex(buf)
		flags := byte(0)
		if t.out.Sampling.Sampled() {
			flags |= 0x01
		}
		if t.out.Random && !t.out.TraceID64 {
			flags |= 0x02
		}
		buf = append(buf, '-', '0', "0123456789abcdef"[flags])
		v := string(buf)
		if rh.ServerTiming {
			t.resp.serverTiming = v
			hdr.Add("Server-Timing", v)
		}
		if rh.TraceResponse {
			t.resp.traceResponse = v[len(prefix):]
			hdr.Set("Traceresponse", t.resp.traceResponse)
		}
	}
	if rh.TraceID != "" {
		t.resp.traceID = t.out.TraceID.String()
		hdr.Set(rh.TraceID, t.resp.traceID)
	}
	if u := rh.TraceURL; u != nil {
		link := strings.ReplaceAll(u.Template, "{trace_id}", t.out.TraceID.String())
		link = strings.ReplaceAll(link, "{span_id}", t.serverID.String())
		t.resp.traceURL = link
		hdr.Set(u.Header, link)
	}
	return true
}
