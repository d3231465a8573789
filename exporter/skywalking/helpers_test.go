package skywalking

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// equalProto fails the test with both messages in JSON when they differ.
func equalProto(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		m := protojson.MarshalOptions{Multiline: true}
		t.Errorf("%s differs\n got: %s\nwant: %s", what, m.Format(got), m.Format(want))
	}
}
