package zipkin

import (
	"context"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// LogExporter writes every span as one Zipkin v2 JSON object, one call of
// its write function per span, for a log that shows what the proxy traced
// when no collector is configured.
type LogExporter struct {
	write func(line []byte)
	buf   []byte
}

var _ exporter.Exporter = (*LogExporter)(nil)

// NewLog returns a LogExporter calling write with each span's JSON. The line
// is only valid during the call: write must copy it to keep it.
func NewLog(write func(line []byte)) *LogExporter {
	return &LogExporter{write: write}
}

// Export writes the batch's spans, each record's SERVER span first. It
// stops between records once ctx is done and returns ctx's error; the
// records already written stay written, so the error is not retryable.
func (l *LogExporter) Export(ctx context.Context, batch []*exporter.Record) error {
	for _, r := range batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r == nil {
			continue
		}
		l.span(r, &r.Server)
		for i := range r.Clients {
			l.span(r, &r.Clients[i])
		}
	}
	if cap(l.buf) > maxKeep {
		l.buf = nil
	}
	return nil
}

func (l *LogExporter) span(r *exporter.Record, s *exporter.Span) {
	l.buf = AppendSpanJSON(l.buf[:0], r, s)
	l.write(l.buf)
}

// Shutdown does nothing: a LogExporter holds no resources.
func (l *LogExporter) Shutdown(context.Context) error { return nil }
