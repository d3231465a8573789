package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// murmur2 is Kafka's key hash (org.apache.kafka.common.utils.Utils.murmur2),
// ported to check the partitions our messages land in against the Java
// producer's choice.
func murmur2(data []byte) int32 {
	const m, r = 0x5bd1e995, 24
	h := uint32(0x9747b28c) ^ uint32(len(data))
	n := len(data) &^ 3
	for i := 0; i < n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(data) & 3 {
	case 3:
		h ^= uint32(data[n+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[n+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[n])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// javaPartition is the Java producer's partition of a keyed record.
func javaPartition(key []byte, partitions int32) int32 {
	return (murmur2(key) & 0x7fffffff) % partitions
}

// TestMurmur2MatchesKafka pins the port to the vectors of Kafka's own
// UtilsTest.testMurmur2.
func TestMurmur2MatchesKafka(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestPartitionsAsTheJavaProducer: two proxies (two exporters, two
// clients) producing hops of the same traces put every message of a trace
// in the partition Kafka's Java producer would choose for its key, so a
// trace's spans from a whole fleet, and from any other producer keying by
// the same trace id, meet in one partition.
func TestPartitionsAsTheJavaProducer(t *testing.T) {
	const partitions = 7
	c := cluster(t, nil, kfake.SeedTopics(partitions, "spans")) // 7, not a power of two: a slip in the modulo shows
	proxies := []*Exporter{
		newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans"}),
		newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans"}),
	}
	const traces = 40
	for range traces {
		trace := record(1).TraceID
		for _, p := range proxies {
			r := record(1)
			r.TraceID = trace
			if err := export(p, 10*time.Second, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	msgs := consume(t, c.ListenAddrs(), "spans", 2*traces)
	used := map[int32]bool{}
	for _, m := range msgs {
		if want := javaPartition(m.Key, partitions); m.Partition != want {
			t.Errorf("trace %s in partition %d, the Java producer's is %d", m.Key, m.Partition, want)
		}
		used[m.Partition] = true
	}
	if len(used) < partitions/2 {
		t.Errorf("%d traces in only %d of %d partitions", traces, len(used), partitions)
	}
}
