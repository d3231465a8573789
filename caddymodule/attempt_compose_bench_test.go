package caddymodule

import (
	"context"
	"net/http/httptrace"
	"net/textproto"
	"testing"
)

// BenchmarkAttemptCompose is what reverse_proxy's per-attempt
// httptrace.WithClientTrace costs over a context without a client trace
// and over one with ours: net/http/httptrace composes two traces field by
// field with reflection, whatever the hooks do.
func BenchmarkAttemptCompose(b *testing.B) {
	var log attemptLog
	log.init()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"no-trace", context.Background()},
		{"over-ours", log.hooks},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				httptrace.WithClientTrace(c.ctx, &httptrace.ClientTrace{
					Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil },
				})
			}
		})
	}
}
