package zipkintest

import "testing"

// A real Zipkin v2 body (the example of zipkin-api's README, plus the
// optional fields) must pass, or the collector is stricter than Zipkin.
func TestCollectorAcceptsValid(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"minimal", `[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2"}]`},
		{"full", `[{"traceId":"5982fe77008310cc80f1da5e10147517","name":"get /api","parentId":"6b221d5bc9e6496c",
			"id":"bd7a977555f6b982","kind":"SERVER","timestamp":1502787600000000,"duration":150000,"debug":true,
			"localEndpoint":{"serviceName":"frontend","ipv4":"192.168.99.1","port":8080},
			"remoteEndpoint":{"ipv6":"2001:db8::c001","port":54321},
			"annotations":[{"timestamp":1502787600000100,"value":"ws"}],
			"tags":{"http.method":"GET","http.path":"/api"}}]`},
		{"two spans, hostname peer", `[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","kind":"CLIENT"},
			{"traceId":"5af7183fb1d4cf5f","id":"452bff9a74ca9ad2","remoteEndpoint":{"serviceName":"db"}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSpans([]byte(tt.body)); err != nil {
				t.Fatalf("rejected a valid body: %v", err)
			}
		})
	}
}

// Each body breaks one rule real receivers or zipkin2-api.yaml enforce; the
// collector must reject it, or the exporter tests prove nothing.
func TestCollectorRejectsInvalid(t *testing.T) {
	const ok = `"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2"`
	tests := []struct {
		name string
		body string
	}{
		{"single object", `{` + ok + `}`},
		{"empty list", `[]`},
		{"invalid utf-8", `[{` + ok + `,"name":"a\xffb"}]`},
		{"not json", `[{` + ok + `]`},
		{"trailing data", `[{` + ok + `}] x`},
		{"string timestamp", `[{` + ok + `,"timestamp":"1502787600000000"}]`},
		{"float timestamp", `[{` + ok + `,"timestamp":1.5}]`},
		{"negative duration", `[{` + ok + `,"duration":-1}]`},
		{"zero duration", `[{` + ok + `,"duration":0}]`},
		{"number tag value", `[{` + ok + `,"tags":{"http.status_code":200}}]`},
		{"null", `[{` + ok + `,"name":null}]`},
		{"missing trace id", `[{"id":"352bff9a74ca9ad2"}]`},
		{"missing id", `[{"traceId":"5af7183fb1d4cf5f"}]`},
		{"uppercase trace id", `[{"traceId":"5AF7183FB1D4CF5F","id":"352bff9a74ca9ad2"}]`},
		{"short trace id", `[{"traceId":"5af7183fb1d4cf5","id":"352bff9a74ca9ad2"}]`},
		{"24 hex trace id", `[{"traceId":"5af7183fb1d4cf5f00000000","id":"352bff9a74ca9ad2"}]`},
		{"zero span id", `[{"traceId":"5af7183fb1d4cf5f","id":"0000000000000000"}]`},
		{"short parent id", `[{` + ok + `,"parentId":"abc"}]`},
		{"empty parent id", `[{` + ok + `,"parentId":""}]`},
		{"unknown field", `[{` + ok + `,"foo":1}]`},
		{"miscased field", `[{` + ok + `,"Name":"x"}]`},
		{"duplicate field", `[{` + ok + `,"name":"a","name":"b"}]`},
		{"uppercase name", `[{` + ok + `,"name":"GET /x"}]`},
		{"empty name", `[{` + ok + `,"name":""}]`},
		{"bad kind", `[{` + ok + `,"kind":"server"}]`},
		{"shared", `[{` + ok + `,"shared":true}]`},
		{"debug false", `[{` + ok + `,"debug":false}]`},
		{"uppercase service", `[{` + ok + `,"localEndpoint":{"serviceName":"Orders"}}]`},
		{"empty endpoint", `[{` + ok + `,"remoteEndpoint":{}}]`},
		{"ipv6 in ipv4", `[{` + ok + `,"remoteEndpoint":{"ipv4":"::1"}}]`},
		{"mapped ipv6", `[{` + ok + `,"remoteEndpoint":{"ipv6":"::ffff:10.0.0.1"}}]`},
		{"port zero", `[{` + ok + `,"remoteEndpoint":{"ipv4":"10.0.0.1","port":0}}]`},
		{"port too big", `[{` + ok + `,"remoteEndpoint":{"ipv4":"10.0.0.1","port":65536}}]`},
		{"string port", `[{` + ok + `,"remoteEndpoint":{"ipv4":"10.0.0.1","port":"80"}}]`},
		{"empty tags", `[{` + ok + `,"tags":{}}]`},
		{"unknown endpoint field", `[{` + ok + `,"localEndpoint":{"serviceName":"a","host":"b"}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSpans([]byte(tt.body)); err == nil {
				t.Fatalf("accepted an invalid body: %s", tt.body)
			}
		})
	}
}
