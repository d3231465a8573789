package memory

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/zipkin"
)

// Exporter writes records into a Store as the Zipkin v2 spans the zipkin
// exporter would send.
type Exporter struct {
	store *Store
	buf   []byte
	spans []Span
}

var _ exporter.Exporter = (*Exporter)(nil)

// NewExporter returns an Exporter writing into store.
func NewExporter(store *Store) *Exporter { return &Exporter{store: store} }

// Export stores the batch's spans. It never fails for the backend's sake:
// a full store evicts its oldest traces instead.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.spans = e.spans[:0]
	for _, r := range batch {
		if r == nil {
			continue
		}
		if err := e.add(r, &r.Server); err != nil {
			return err
		}
		for i := range r.Clients {
			if err := e.add(r, &r.Clients[i]); err != nil {
				return err
			}
		}
	}
	e.store.Add(e.spans...)
	clear(e.spans)
	return nil
}

// add converts one span through the Zipkin encoder, so the store holds what
// a Zipkin server would: the same names, tags and endpoints.
func (e *Exporter) add(r *exporter.Record, s *exporter.Span) error {
	e.buf = zipkin.AppendSpanJSON(e.buf[:0], r, s)
	var sp Span
	if err := json.Unmarshal(e.buf, &sp); err != nil {
		return fmt.Errorf("%w: memory: %v", exporter.ErrEncode, err)
	}
	e.spans = append(e.spans, sp)
	return nil
}

// Shutdown does nothing: the store outlives its exporters.
func (e *Exporter) Shutdown(context.Context) error { return nil }
