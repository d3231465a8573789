package skywalking

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// ErrAuth is wrapped by the error Export returns when the collector refuses
// the token (gRPC Unauthenticated or PermissionDenied, HTTP 401 or 403).
// Retrying cannot help, so the error is not retryable.
var ErrAuth = errors.New("skywalking collector refused the authentication token")

// managementTimeout bounds one instance-registration or keepAlive call.
const managementTimeout = 10 * time.Second

// transport sends SkyWalking messages over one protocol.
type transport interface {
	// collect sends the segments of one batch.
	collect(ctx context.Context, segs []*agentv3.SegmentObject) error
	// reportProperties registers the instance.
	reportProperties(ctx context.Context, p *managementv3.InstanceProperties) error
	// keepAlive tells the collector the instance is alive.
	keepAlive(ctx context.Context, p *managementv3.InstancePingPkg) error
	// close releases the transport's connections.
	close() error
}

// Exporter sends Records to SkyWalking. It implements exporter.Exporter and
// is meant to be driven by an exporter.Queue. A background goroutine
// registers the instance and keeps it alive; its failures go to
// Config.OnError and never delay Export.
type Exporter struct {
	t    transport
	segs []*agentv3.SegmentObject // reused between Exports

	stop     context.CancelFunc
	done     chan struct{} // closed when the management goroutine exits
	shutdown sync.Once
	closeErr error
}

var _ exporter.Exporter = (*Exporter)(nil)

// New validates cfg and returns an Exporter for the transport its Address
// selects. It connects lazily: a collector that is down makes Export fail
// with a retryable error, never New.
func New(cfg Config) (*Exporter, error) {
	ep, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var t transport
	switch ep.proto {
	case protoGRPC:
		t, err = newGRPC(ep.target, ep.tls || cfg.TLS != nil, cfg.TLS, cfg.Token, cfg.Version, cfg.UseEnvProxy)
	default:
		t, err = newHTTP(ep.target, cfg.TLS, cfg.Token, cfg.Version, cfg.Headers, cfg.UseEnvProxy)
	}
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	e := &Exporter{t: t, stop: stop, done: make(chan struct{})}
	interval := cfg.KeepAlive
	if interval == 0 {
		interval = DefaultKeepAlive
	}
	if interval < 0 {
		close(e.done)
		return e, nil
	}
	m := &manager{
		t:        t,
		interval: interval,
		onError:  cfg.OnError,
		props:    InstanceProperties(cfg.Service, cfg.Instance, cfg.Version),
		ping:     InstancePing(cfg.Service, cfg.Instance),
	}
	go func() {
		defer close(e.done)
		m.run(ctx)
	}()
	return e, nil
}

// Export sends the batch as one segment per Record. It returns once the
// collector acknowledged the batch, or when ctx is done. Refused
// connections, unavailable collectors, timeouts and overload are retryable
// (exporter.Retryable); a refused token (ErrAuth) and other rejections are
// not.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	if len(batch) == 0 {
		return nil
	}
	segs := e.segs[:0]
	for _, r := range batch {
		segs = append(segs, Segment(r))
	}
	err := e.t.collect(ctx, segs)
	clear(segs)
	e.segs = segs
	return err
}

// Shutdown stops instance keepAlive, waiting for the background goroutine
// until ctx is done, and closes the connections. Later calls return the
// first call's result.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdown.Do(func() {
		e.stop()
		var waitErr error
		select {
		case <-e.done:
		case <-ctx.Done():
			waitErr = fmt.Errorf("skywalking shutdown: %w", ctx.Err())
		}
		e.closeErr = errors.Join(waitErr, e.t.close())
	})
	return e.closeErr
}

// manager registers the instance once, retrying with backoff until it
// succeeds, then sends keepAlive every interval.
type manager struct {
	t        transport
	interval time.Duration
	onError  func(error)
	props    *managementv3.InstanceProperties
	ping     *managementv3.InstancePingPkg
}

// run is the management goroutine's body; it returns when ctx is done.
func (m *manager) run(ctx context.Context) {
	wait := min(time.Second, m.interval)
	for {
		err := m.call(ctx, func(ctx context.Context) error { return m.t.reportProperties(ctx, m.props) })
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		m.report(fmt.Errorf("skywalking report instance properties: %w", err))
		if !sleep(ctx, exporter.Jitter(wait)) {
			return
		}
		wait = min(wait*2, m.interval)
	}
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		err := m.call(ctx, func(ctx context.Context) error { return m.t.keepAlive(ctx, m.ping) })
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.report(fmt.Errorf("skywalking keepAlive: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// call runs one management call with its own timeout.
func (m *manager) call(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, managementTimeout)
	defer cancel()
	return f(ctx)
}

func (m *manager) report(err error) {
	if m.onError != nil {
		m.onError(err)
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

// InstanceProperties registers a proxy instance with OAP: the properties
// SkyWalking's Go agent reports (skywalking-go plugins/core/tool.go
// buildOSInfo), plus the tracingproxy version when version is set. Every
// SkyWalking transport sends it: gRPC, HTTP and Kafka.
func InstanceProperties(service, instance, version string) *managementv3.InstanceProperties {
	kv := func(k, v string) *commonv3.KeyStringValuePair {
		return &commonv3.KeyStringValuePair{Key: k, Value: validUTF8(v)}
	}
	var props []*commonv3.KeyStringValuePair
	if pid := os.Getpid(); pid > 0 {
		props = append(props, kv("Process No.", strconv.Itoa(pid)))
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	props = append(props, kv("hostname", host), kv("language", "go"), kv("OS Name", runtime.GOOS))
	for _, ip := range ipv4s() {
		props = append(props, kv("ipv4", ip))
	}
	if version != "" {
		props = append(props, kv("tracingproxy.version", version))
	}
	return &managementv3.InstanceProperties{
		Service:         validUTF8(service),
		ServiceInstance: validUTF8(instance),
		Properties:      props,
	}
}

// InstancePing is the keepAlive of a proxy instance.
func InstancePing(service, instance string) *managementv3.InstancePingPkg {
	return &managementv3.InstancePingPkg{Service: validUTF8(service), ServiceInstance: validUTF8(instance)}
}

// ipv4s lists the host's non-loopback IPv4 addresses.
func ipv4s() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
			if ip4 := n.IP.To4(); ip4 != nil {
				out = append(out, ip4.String())
			}
		}
	}
	return out
}

// authError is the non-retryable error for a refused token.
func authError(token string, detail error) error {
	if token == "" {
		return fmt.Errorf("%w: the collector requires one, set the token option: %v", ErrAuth, detail)
	}
	return fmt.Errorf("%w: check the token option: %v", ErrAuth, detail)
}

// ctxError wraps a done context's error as retryable: one attempt ran out of
// time or was cancelled, and the collector may answer the next one.
func ctxError(op string, err error) error {
	return exporter.Retryable(fmt.Errorf("skywalking %s: %w", op, err), 0)
}
