package kafka

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSASL authenticates with each mechanism to a cluster that requires
// it: the right password delivers, a wrong one delivers nothing and fails
// the export.
func TestSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := cluster(t, []string{"spans"}, kfake.EnableSASL(), kfake.Superuser(mech, "proxy", "s3cret"))
			ok := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", SASL: &SASL{Mechanism: mech, Username: "proxy", Password: "s3cret"}})
			r := record(1)
			if err := export(ok, 10*time.Second, r); err != nil {
				t.Fatalf("with the right password: %v", err)
			}
			bad := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", SASL: &SASL{Mechanism: mech, Username: "proxy", Password: "wrong"}})
			err := export(bad, 3*time.Second, record(1))
			if err == nil {
				t.Fatal("a wrong password delivered")
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("the error quotes the password: %v", err)
			}
			auth := kgo.SASL(mechanism(&SASL{Mechanism: mech, Username: "proxy", Password: "s3cret"}))
			msgs := consume(t, c.ListenAddrs(), "spans", 1, auth)
			if len(msgs) != 1 || string(msgs[0].Key) != traceHex(r) {
				t.Errorf("delivered %d messages, want only the authenticated one", len(msgs))
			}
		})
	}
}
