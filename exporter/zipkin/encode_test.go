package zipkin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// testStart is 2025-03-14T15:09:26.535897Z, 1741964966535897 µs after the
// epoch.
var testStart = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

const (
	testTraceHex  = "4bf92f3577b34da6a3ce929d0e0e4736"
	testCallerHex = "b7ad6b7169203331" // the caller's span: our SERVER span's parent
	testServerHex = "00f067aa0ba902b7"
	testClientHex = "53995c3f42cd8ad8"
)

func traceID(t testing.TB, s string) headers.TraceID {
	t.Helper()
	id, _, err := headers.ParseTraceID(s)
	if err != nil {
		t.Fatalf("ParseTraceID(%q): %v", s, err)
	}
	return id
}

func spanID(t testing.TB, s string) headers.SpanID {
	t.Helper()
	id, err := headers.ParseSpanID(s)
	if err != nil {
		t.Fatalf("ParseSpanID(%q): %v", s, err)
	}
	return id
}

// testRecord is one proxied request: a SERVER span continuing a caller and a
// CLIENT span to the upstream 10.0.0.5:8080.
func testRecord(t testing.TB) *exporter.Record {
	server := spanID(t, testServerHex)
	return &exporter.Record{
		Service: "Orders-Legacy",
		TraceID: traceID(t, testTraceHex),
		Server: exporter.Span{
			Kind:     exporter.KindServer,
			ID:       server,
			ParentID: spanID(t, testCallerHex),
			Name:     "GET /orders/{id}",
			Start:    testStart,
			Duration: 12345678 * time.Nanosecond,
			Status:   200,
			Peer:     "192.0.2.10:53422",
			Tags:     []exporter.Tag{{Key: "http.method", Value: "GET"}, {Key: "http.path", Value: "/orders/42"}},
		},
		Clients: []exporter.Span{{
			Kind:     exporter.KindClient,
			ID:       spanID(t, testClientHex),
			ParentID: server,
			Name:     "GET /orders/{id}",
			Start:    testStart.Add(150 * time.Microsecond),
			Duration: 12 * time.Millisecond,
			Status:   200,
			Peer:     "10.0.0.5:8080",
			Tags:     []exporter.Tag{{Key: "http.method", Value: "GET"}},
		}},
		SamplingReason: "parent",
	}
}

// The exact bytes of a record, so a change of field order or format shows.
func TestAppendJSONGolden(t *testing.T) {
	want := `[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7","parentId":"b7ad6b7169203331",` +
		`"kind":"SERVER","name":"get /orders/{id}","timestamp":1741964966535897,"duration":12345,` +
		`"localEndpoint":{"serviceName":"orders-legacy"},"remoteEndpoint":{"ipv4":"192.0.2.10","port":53422},` +
		`"tags":{"http.status_code":"200","sampling.reason":"parent","http.method":"GET","http.path":"/orders/42"}},` +
		`{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"53995c3f42cd8ad8","parentId":"00f067aa0ba902b7",` +
		`"kind":"CLIENT","name":"get /orders/{id}","timestamp":1741964966536047,"duration":12000,` +
		`"localEndpoint":{"serviceName":"orders-legacy"},"remoteEndpoint":{"ipv4":"10.0.0.5","port":8080},` +
		`"tags":{"http.status_code":"200","http.method":"GET"}}]`
	got := string(AppendJSON(nil, []*exporter.Record{testRecord(t)}))
	if got != want {
		t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	if _, err := zipkintest.DecodeSpans([]byte(got)); err != nil {
		t.Fatalf("golden output fails the strict collector: %v", err)
	}
}

func TestAppendJSONAppends(t *testing.T) {
	tests := []struct {
		name  string
		batch []*exporter.Record
		want  string
	}{
		{"empty batch", nil, "prefix[]"},
		{"nil records skipped", []*exporter.Record{nil, nil}, "prefix[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendJSON([]byte("prefix"), tt.batch)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	r := testRecord(t)
	out := AppendJSON([]byte("prefix"), []*exporter.Record{nil, r, nil, r})
	if !strings.HasPrefix(string(out), "prefix[{") {
		t.Fatalf("output does not keep dst and start the array: %.20s", out)
	}
	spans, err := zipkintest.DecodeSpans(out[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
}

func TestAppendJSONTraceIDWidth(t *testing.T) {
	tests := []struct {
		name  string
		id    string
		is64  bool
		wants string
	}{
		{"64-bit id written 16 wide", "0000000000000000a3ce929d0e0e4736", true, "a3ce929d0e0e4736"},
		{"64-bit flag on a 128-bit id ignored", testTraceHex, true, testTraceHex},
		{"128-bit id with zero high half", "0000000000000000a3ce929d0e0e4736", false, "0000000000000000a3ce929d0e0e4736"},
		{"128-bit id", testTraceHex, false, testTraceHex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord(t)
			r.TraceID, r.TraceID64 = traceID(t, tt.id), tt.is64
			spans, err := zipkintest.DecodeSpans(AppendJSON(nil, []*exporter.Record{r}))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range spans {
				if s.TraceID != tt.wants {
					t.Errorf("traceId %q, want %q", s.TraceID, tt.wants)
				}
			}
		})
	}
}

func TestAppendJSONSpanFields(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(r *exporter.Record)
		check func(t *testing.T, server, client zipkintest.Span)
	}{
		{"root server span has no parentId", func(r *exporter.Record) { r.Server.ParentID = headers.SpanID{} },
			func(t *testing.T, server, client zipkintest.Span) {
				if server.ParentID != nil {
					t.Errorf("root parentId %q", *server.ParentID)
				}
				if deref(client.ParentID) != testServerHex {
					t.Errorf("client parentId %q, want the server span", deref(client.ParentID))
				}
			}},
		{"client without parent gets the server span", func(r *exporter.Record) { r.Clients[0].ParentID = headers.SpanID{} },
			func(t *testing.T, _, client zipkintest.Span) {
				if deref(client.ParentID) != testServerHex {
					t.Errorf("client parentId %q, want %s", deref(client.ParentID), testServerHex)
				}
			}},
		{"sub-microsecond duration is 1", func(r *exporter.Record) { r.Server.Duration = 300; r.Clients[0].Duration = 0 },
			func(t *testing.T, server, client zipkintest.Span) {
				if *server.Duration != 1 || *client.Duration != 1 {
					t.Errorf("durations %d, %d, want 1, 1", *server.Duration, *client.Duration)
				}
			}},
		{"duration spans the truncated start and end", func(r *exporter.Record) {
			r.Server.Start = time.Unix(1700000000, 900)
			r.Server.Duration = 2499 // ends at 3399ns: microseconds 0 to 3
		}, func(t *testing.T, server, _ zipkintest.Span) {
			if *server.Duration != 3 {
				t.Errorf("duration %d, want 3 (end µs 3 - start µs 0)", *server.Duration)
			}
		}},
		{"nested spans stay nested", func(r *exporter.Record) {
			r.Server.Start = time.Unix(1700000000, 100)
			r.Server.Duration = 5000
			r.Clients[0].Start = time.Unix(1700000000, 1900)
			r.Clients[0].Duration = 3199 // both end at 5100ns
		}, func(t *testing.T, server, client zipkintest.Span) {
			if *client.Timestamp+*client.Duration > *server.Timestamp+*server.Duration || *client.Timestamp < *server.Timestamp {
				t.Errorf("client [%d +%d] escapes server [%d +%d]", *client.Timestamp, *client.Duration, *server.Timestamp, *server.Duration)
			}
		}},
		{"zero start leaves timestamp out", func(r *exporter.Record) { r.Server.Start = time.Time{} },
			func(t *testing.T, server, _ zipkintest.Span) {
				if server.Timestamp != nil {
					t.Errorf("timestamp %d written for a zero start", *server.Timestamp)
				}
			}},
		{"annotations in order, one without a time left out", func(r *exporter.Record) {
			c := &r.Clients[0]
			c.Annotations = []exporter.Annotation{
				{Time: c.Start, Value: exporter.AnnotationConnectStart},
				{Value: "no time"},
				{Time: c.Start.Add(time.Millisecond), Value: exporter.AnnotationWireSend},
			}
		}, func(t *testing.T, server, client zipkintest.Span) {
			if server.Annotations != nil {
				t.Errorf("server annotations %+v, want none", server.Annotations)
			}
			got := client.Annotations
			if len(got) != 2 || got[0].Value != "connect.start" || got[1].Value != "ws" ||
				got[1].Timestamp-got[0].Timestamp != 1000 || got[0].Timestamp != *client.Timestamp {
				t.Errorf("client annotations %+v, want connect.start at the span's start and ws 1000µs later", got)
			}
		}},
		{"local span has no kind, the server as parent", func(r *exporter.Record) {
			r.Clients[0].Kind, r.Clients[0].ParentID, r.Clients[0].Peer = exporter.KindLocal, headers.SpanID{}, ""
		}, func(t *testing.T, _, local zipkintest.Span) {
			if local.Kind != nil || deref(local.ParentID) != testServerHex || local.RemoteEndpoint != nil {
				t.Errorf("local span kind %v parent %q remote %v, want no kind, the server span, no remote", local.Kind, deref(local.ParentID), local.RemoteEndpoint)
			}
		}},
		{"only annotations without a time: none written", func(r *exporter.Record) {
			r.Clients[0].Annotations = []exporter.Annotation{{Value: "x"}}
		}, func(t *testing.T, _, client zipkintest.Span) {
			if client.Annotations != nil {
				t.Errorf("annotations %+v written", client.Annotations)
			}
		}},
		{"empty fields left out", func(r *exporter.Record) {
			r.Service, r.SamplingReason = "", ""
			r.Server.Name, r.Server.Peer, r.Server.Status, r.Server.Tags = "", "", 0, nil
		}, func(t *testing.T, server, _ zipkintest.Span) {
			if server.Name != nil || server.LocalEndpoint != nil || server.RemoteEndpoint != nil || server.Tags != nil {
				t.Errorf("empty fields written: %+v", server)
			}
		}},
		{"status, error and debug", func(r *exporter.Record) {
			r.Debug = true
			r.Clients[0].Status, r.Clients[0].Error = 502, "upstream: connection refused"
		}, func(t *testing.T, server, client zipkintest.Span) {
			if server.Debug == nil || client.Debug == nil {
				t.Error("debug not written on both spans")
			}
			if client.Tags["http.status_code"] != "502" || client.Tags["error"] != "upstream: connection refused" {
				t.Errorf("client tags %v", client.Tags)
			}
		}},
		{"sw8 trace id kept when not the hex trace id", func(r *exporter.Record) {
			r.Parent.TraceID = "a1b2c3.45.16789"
			r.Parent.SegmentID = "seg"
		}, func(t *testing.T, server, client zipkintest.Span) {
			if server.Tags["sw8.trace_id"] != "a1b2c3.45.16789" {
				t.Errorf("server tags %v", server.Tags)
			}
			if _, ok := client.Tags["sw8.trace_id"]; ok {
				t.Error("sw8.trace_id on the client span")
			}
		}},
		{"sw8 trace id equal to the hex trace id left out", func(r *exporter.Record) { r.Parent.TraceID = testTraceHex },
			func(t *testing.T, server, _ zipkintest.Span) {
				if _, ok := server.Tags["sw8.trace_id"]; ok {
					t.Errorf("server tags %v", server.Tags)
				}
			}},
		{"derived tags win over span tags", func(r *exporter.Record) {
			r.Server.Error = "boom"
			r.Server.Tags = []exporter.Tag{{Key: "error", Value: "other"}, {Key: "http.status_code", Value: "1"},
				{Key: "sampling.reason", Value: "x"}, {Key: "k", Value: "1"}, {Key: "k", Value: "2"}}
		}, func(t *testing.T, server, _ zipkintest.Span) {
			want := map[string]string{"error": "boom", "http.status_code": "200", "sampling.reason": "parent", "k": "1"}
			if !mapsEqual(server.Tags, want) {
				t.Errorf("tags %v, want %v", server.Tags, want)
			}
		}},
		{"keys that escape alike are one key", func(r *exporter.Record) {
			r.Server.Tags = []exporter.Tag{{Key: "a\xff", Value: "1"}, {Key: "a\xfe", Value: "2"}, {Key: "a\uFFFD", Value: "3"}}
		}, func(t *testing.T, server, _ zipkintest.Span) {
			if server.Tags["a\uFFFD"] != "1" {
				t.Errorf("tags %v", server.Tags)
			}
		}},
		{"more than 16 tags", func(r *exporter.Record) {
			r.Server.Tags = nil
			for i := range 40 {
				r.Server.Tags = append(r.Server.Tags, exporter.Tag{Key: string(rune('a' + i%20)), Value: "v"})
			}
		}, func(t *testing.T, server, _ zipkintest.Span) {
			if len(server.Tags) != 22 {
				t.Errorf("%d tags, want 20 distinct + 2 derived: %v", len(server.Tags), server.Tags)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord(t)
			tt.edit(r)
			spans, err := zipkintest.DecodeSpans(AppendJSON(nil, []*exporter.Record{r}))
			if err != nil {
				t.Fatal(err)
			}
			if len(spans) != 2 || deref(spans[0].Kind) != "SERVER" || deref(spans[1].Kind) != r.Clients[0].Kind.String() {
				t.Fatalf("spans %+v, want SERVER then %q", spans, r.Clients[0].Kind)
			}
			tt.check(t, spans[0], spans[1])
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestAppendJSONRemoteEndpoint(t *testing.T) {
	tests := []struct {
		peer string
		want string // serviceName|ipv4|ipv6|port, "" for no endpoint
	}{
		{"10.0.0.5:8080", "|10.0.0.5||8080"},
		{"10.0.0.5", "|10.0.0.5||0"},
		{"[2001:db8::1]:443", "||2001:db8::1|443"},
		{"[2001:DB8:0::1]:443", "||2001:db8::1|443"},
		{"2001:db8::1", "||2001:db8::1|0"},
		{"[::1]", "||::1|0"},
		{"::ffff:10.1.2.3", "|10.1.2.3||0"},
		{"[::ffff:10.1.2.3]:80", "|10.1.2.3||80"},
		{"[fe80::1%eth0]:80", "||fe80::1|80"},
		{"Upstream.Internal:8080", "upstream.internal|||8080"},
		{"localhost", "localhost|||0"},
		{"1.2.3:80", "1.2.3|||80"},
		{":8080", "|||8080"},
		{"10.0.0.5:0", "|10.0.0.5||0"},
		{"10.0.0.5:65536", "|10.0.0.5||0"},
		{"10.0.0.5:http", "|10.0.0.5||0"},
		{"10.0.0.5:", "|10.0.0.5||0"},
		{"[::1", "[::1|||0"},
		{"", ""},
		{":", ""},
		{"[]:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			r := testRecord(t)
			r.Clients[0].Peer = tt.peer
			spans, err := zipkintest.DecodeSpans(AppendJSON(nil, []*exporter.Record{r}))
			if err != nil {
				t.Fatal(err)
			}
			if got := spans[1].RemoteEndpoint.String(); got != tt.want {
				t.Fatalf("remoteEndpoint %q, want %q", got, tt.want)
			}
		})
	}
}

// weirdStrings are hostile or merely unusual inputs for every string field.
var weirdStrings = []string{
	`quote" back\slash /slash`,
	"new\nline\ttab\rcr\bbs\fff",
	"nul\x00 us\x1f del\x7f",
	"bad utf-8 \xff\xfe and cut \xe6\x97",
	"surrogate half \xed\xa0\x80",
	"unicode 日本語 ✓ Ünïcödé 😀",
	"separators \u2028 \u2029",
	"html </script> & <b>",
	"UPPER ΣΊΣΥΦΟΣ İ",
	"",
}

// wantString is what a JSON reader must get back for s: each invalid UTF-8
// byte replaced by U+FFFD, lowercased as strings.ToLower does when lower.
func wantString(s string, lower bool) string {
	var b strings.Builder
	for _, r := range s { // an invalid byte ranges as one U+FFFD
		if lower {
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestAppendJSONEscaping(t *testing.T) {
	for _, s := range weirdStrings {
		t.Run(s, func(t *testing.T) {
			r := testRecord(t)
			r.Service, r.SamplingReason = "svc "+s, "reason "+s
			r.Parent.TraceID = "sw " + s
			r.Server.Name = "name " + s
			r.Server.Error = "error " + s
			r.Server.Tags = []exporter.Tag{{Key: "key " + s, Value: s}}
			r.Clients[0].Peer = "Host" + s + ":80"
			out := AppendJSON(nil, []*exporter.Record{r})
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %q", out)
			}
			spans, err := zipkintest.DecodeSpans(out)
			if err != nil {
				t.Fatal(err)
			}
			server, client := spans[0], spans[1]
			checks := []struct{ field, got, want string }{
				{"name", deref(server.Name), wantString("name "+s, true)},
				{"serviceName", deref(server.LocalEndpoint.ServiceName), wantString("svc "+s, true)},
				{"error", server.Tags["error"], wantString("error "+s, false)},
				{"sampling.reason", server.Tags["sampling.reason"], wantString("reason "+s, false)},
				{"sw8.trace_id", server.Tags["sw8.trace_id"], wantString("sw "+s, false)},
				{"tag", server.Tags[wantString("key "+s, false)], wantString(s, false)},
				{"peer", deref(client.RemoteEndpoint.ServiceName), wantString("host"+s, true)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: decoded %q, want %q", c.field, c.got, c.want)
				}
			}
			if strings.ContainsAny(string(out), "\u2028\u2029") {
				t.Error("U+2028 or U+2029 written raw")
			}
		})
	}
}

// appendString must read back as encoding/json's own encoding of the same
// string reads back.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range weirdStrings {
		t.Run(s, func(t *testing.T) {
			ref, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var want, got string
			if err := json.Unmarshal(ref, &want); err != nil {
				t.Fatal(err)
			}
			out := appendString(nil, s, false)
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%q: %v", out, err)
			}
			if got != want {
				t.Fatalf("decoded %q, encoding/json's decodes to %q", got, want)
			}
		})
	}
}

func TestAppendSpanJSON(t *testing.T) {
	r := testRecord(t)
	all := AppendJSON(nil, []*exporter.Record{r})
	one := AppendSpanJSON([]byte("x"), r, &r.Clients[0])
	if one[0] != 'x' {
		t.Fatal("dst not kept")
	}
	s, err := zipkintest.DecodeSpan(one[1:])
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != testClientHex || deref(s.ParentID) != testServerHex {
		t.Fatalf("id %s parent %s", s.ID, deref(s.ParentID))
	}
	if !strings.Contains(string(all), string(one[1:])) {
		t.Fatalf("the span object differs from the one in the batch:\n%s\n%s", one[1:], all)
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range weirdStrings {
		f.Add(s, "k"+s, s, "h"+s+":80", s, s)
	}
	f.Add("GET /", "http.status_code", "x", "[::1]:1", "", "Svc")
	f.Add("n", "error", "v", "10.0.0.1:99999", "boom", "")
	f.Fuzz(func(t *testing.T, name, key, value, peer, errText, service string) {
		r := testRecord(t)
		r.Service, r.Server.Name, r.Server.Error = service, name, errText
		r.Server.Tags = []exporter.Tag{{Key: key, Value: value}}
		r.Server.Peer, r.Clients[0].Peer = peer, peer
		r.SamplingReason = ""
		out := AppendJSON(nil, []*exporter.Record{r})
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %q", out)
		}
		spans, err := zipkintest.DecodeSpans(out)
		if err != nil {
			t.Fatalf("%v\n%q", err, out)
		}
		server := spans[0]
		if name != "" && deref(server.Name) != wantString(name, true) {
			t.Errorf("name %q, want %q", deref(server.Name), wantString(name, true))
		}
		if service != "" && deref(server.LocalEndpoint.ServiceName) != wantString(service, true) {
			t.Errorf("serviceName %q", deref(server.LocalEndpoint.ServiceName))
		}
		tags := map[string]string{"http.status_code": "200"}
		if errText != "" {
			tags["error"] = wantString(errText, false)
		}
		if k := wantString(key, false); tags[k] == "" {
			tags[k] = wantString(value, false)
		}
		if !mapsEqual(server.Tags, tags) {
			t.Errorf("tags %q, want %q", server.Tags, tags)
		}
		if spans[0].RemoteEndpoint.String() != spans[1].RemoteEndpoint.String() {
			t.Errorf("one peer, two endpoints: %q %q", spans[0].RemoteEndpoint.String(), spans[1].RemoteEndpoint.String())
		}
		one, err := zipkintest.DecodeSpan(AppendSpanJSON(nil, r, &r.Server))
		if err != nil {
			t.Fatal(err)
		}
		if !mapsEqual(one.Tags, server.Tags) {
			t.Errorf("AppendSpanJSON tags %q, AppendJSON %q", one.Tags, server.Tags)
		}
	})
}
