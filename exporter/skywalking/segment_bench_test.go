package skywalking

import (
	"testing"

	"github.com/tracingproxy/tracingproxy/exporter"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
)

// benchRecords are a minimal record (no sw8 caller, one upstream call, no
// tags) and the full test record (sw8 caller, two upstream calls, tags, an
// error log).
func benchRecords() []struct {
	name string
	r    *exporter.Record
} {
	minimal := testRecord()
	minimal.Parent.SegmentID = ""
	minimal.Server.Tags = nil
	minimal.Clients = minimal.Clients[1:]
	minimal.Clients[0].Tags = nil
	return []struct {
		name string
		r    *exporter.Record
	}{{"minimal", minimal}, {"full", testRecord()}}
}

func BenchmarkSegment(b *testing.B) {
	for _, bc := range benchRecords() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Segment(bc.r)
			}
		})
	}
}

func BenchmarkSegmentMarshal(b *testing.B) {
	for _, bc := range benchRecords() {
		b.Run(bc.name, func(b *testing.B) {
			seg := Segment(bc.r)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(seg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHTTPJSON(b *testing.B) {
	for _, bc := range benchRecords() {
		b.Run(bc.name, func(b *testing.B) {
			segs := []*agentv3.SegmentObject{Segment(bc.r)}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = appendSegmentsJSON(buf[:0], segs); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
