package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/skywalking"
)

// registerKeyPrefix starts the key of an instance-properties message: OAP's
// kafka-fetcher (ServiceManagementHandler) reads a management message whose
// key starts with it as InstanceProperties, any other as InstancePingPkg.
const registerKeyPrefix = "register-"

// management registers the instance on the management topic, retrying with
// backoff until a broker takes it, then sends keepAlive every interval, as
// SkyWalking's agents do over Kafka.
type management struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startManagement(cl *kgo.Client, cfg *Config) *management {
	ctx, cancel := context.WithCancel(context.Background())
	m := &management{cancel: cancel, done: make(chan struct{})}
	props, _ := proto.Marshal(skywalking.InstanceProperties(cfg.Service, cfg.Instance, cfg.Version))
	ping, _ := proto.Marshal(skywalking.InstancePing(cfg.Service, cfg.Instance))
	register := func() *kgo.Record {
		return &kgo.Record{Topic: cfg.ManagementTopic, Key: []byte(registerKeyPrefix + cfg.Instance), Value: props}
	}
	alive := func() *kgo.Record {
		return &kgo.Record{Topic: cfg.ManagementTopic, Key: []byte(cfg.Instance), Value: ping}
	}
	send := func(r *kgo.Record) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.DeliveryTimeout)
		defer cancel()
		return cl.ProduceSync(ctx, r).FirstErr()
	}
	report := func(err error) {
		if cfg.OnError != nil && ctx.Err() == nil {
			cfg.OnError(err)
		}
	}
	go func() {
		defer close(m.done)
		wait := min(time.Second, cfg.KeepAlive)
		for {
			err := send(register())
			if err == nil {
				break
			}
			report(fmt.Errorf("kafka skywalking instance properties: %w", err))
			if !sleep(ctx, exporter.Jitter(wait)) {
				return
			}
			wait = min(wait*2, cfg.KeepAlive)
		}
		tick := time.NewTicker(cfg.KeepAlive)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := send(alive()); err != nil {
				report(fmt.Errorf("kafka skywalking keepAlive: %w", err))
			}
		}
	}()
	return m
}

// stop ends the goroutine, waiting for it until ctx is done.
func (m *management) stop(ctx context.Context) {
	m.cancel()
	select {
	case <-m.done:
	case <-ctx.Done():
	}
}

// sleep waits for d, reporting false if ctx was done first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
