package stitch

import (
	"container/list"
	"sync"
	"time"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxInflight = 65536
	DefaultMaxIDs      = 65536
	DefaultIDTTL       = 5 * time.Minute
	// MaxCandidates caps the candidate span ids reported with MethodNone.
	MaxCandidates = 8
)

// Config bounds a Registry. Zero fields take the defaults above.
type Config struct {
	// Methods is the order Attribute tries; nil means DefaultMethods.
	Methods []Method
	// MaxInflight caps the in-flight ingress requests tracked; requests
	// beyond it are served but not registered (Begin returns nil).
	MaxInflight int
	// MaxIDs caps the request-id map; the oldest entry is evicted first.
	MaxIDs int
	// IDTTL is how long an id stays after its request ended, so a call made
	// after the inbound response (fire-and-forget work) is still stitched.
	IDTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Ingress is one in-flight inbound request of the service.
type Ingress struct {
	// Ctx names the ingress SERVER span egress calls become children of.
	Ctx headers.SpanContext
	// RequestID is the correlation id the request carried or was given.
	RequestID string

	seq uint64
	pid int // service process serving it, 0 while unknown
}

type idEntry struct {
	id        string
	ctx       headers.SpanContext
	live      int
	ambiguous bool
	ended     time.Time
	elem      *list.Element
}

// Registry is the attribution state one service shares between its ingress
// and egress handlers. It is safe for concurrent use.
type Registry struct {
	methods     []Method
	maxInflight int
	maxIDs      int
	ttl         time.Duration
	now         func() time.Time

	mu       sync.Mutex
	seq      uint64
	inflight map[uint64]*Ingress
	byPID    map[int]int // pid → in-flight ingress requests served by it
	ids      map[string]*idEntry
	order    list.List // *idEntry, oldest first
}

// NewRegistry returns an empty Registry bounded by cfg.
func NewRegistry(cfg Config) *Registry {
	r := &Registry{
		methods:     cfg.Methods,
		maxInflight: cfg.MaxInflight,
		maxIDs:      cfg.MaxIDs,
		ttl:         cfg.IDTTL,
		now:         cfg.Now,
		inflight:    make(map[uint64]*Ingress),
		byPID:       make(map[int]int),
		ids:         make(map[string]*idEntry),
	}
	if r.methods == nil {
		r.methods = DefaultMethods
	}
	if r.maxInflight <= 0 {
		r.maxInflight = DefaultMaxInflight
	}
	if r.maxIDs <= 0 {
		r.maxIDs = DefaultMaxIDs
	}
	if r.ttl <= 0 {
		r.ttl = DefaultIDTTL
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Methods is the order Attribute tries.
func (r *Registry) Methods() []Method { return r.methods }

// Uses reports whether m is one of the configured methods.
func (r *Registry) Uses(m Method) bool {
	for _, x := range r.methods {
		if x == m {
			return true
		}
	}
	return false
}

// Begin registers an inbound request. It returns nil when MaxInflight
// requests are already tracked; End and SetPID accept nil.
func (r *Registry) Begin(ctx headers.SpanContext, requestID string) *Ingress {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inflight) >= r.maxInflight {
		return nil
	}
	r.seq++
	in := &Ingress{Ctx: ctx, RequestID: requestID, seq: r.seq}
	r.inflight[in.seq] = in
	if requestID != "" {
		r.beginID(requestID, ctx)
	}
	return in
}

func (r *Registry) beginID(id string, ctx headers.SpanContext) {
	if e, ok := r.ids[id]; ok {
		if e.live > 0 {
			// Two live requests with one id: no call can tell them apart.
			e.ambiguous = true
		} else {
			e.ctx, e.ambiguous = ctx, false
		}
		e.live++
		r.order.MoveToBack(e.elem)
		return
	}
	r.expire()
	for len(r.ids) >= r.maxIDs {
		r.evict(r.order.Front())
	}
	e := &idEntry{id: id, ctx: ctx, live: 1}
	e.elem = r.order.PushBack(e)
	r.ids[id] = e
}

func (r *Registry) evict(el *list.Element) {
	e := el.Value.(*idEntry)
	r.order.Remove(el)
	delete(r.ids, e.id)
}

// expire drops ended entries past their TTL from the old end of the list.
func (r *Registry) expire() {
	now := r.now()
	for el := r.order.Front(); el != nil; {
		e := el.Value.(*idEntry)
		if e.live > 0 || now.Sub(e.ended) < r.ttl {
			return
		}
		next := el.Next()
		r.evict(el)
		el = next
	}
}

// End unregisters an inbound request when its response is done.
func (r *Registry) End(in *Ingress) {
	if in == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.inflight[in.seq]; !ok {
		return
	}
	delete(r.inflight, in.seq)
	if in.pid != 0 {
		r.dropPID(in.pid)
	}
	if in.RequestID != "" {
		if e, ok := r.ids[in.RequestID]; ok && e.live > 0 {
			e.live--
			if e.live == 0 {
				e.ended = r.now()
				r.order.MoveToBack(e.elem)
			}
		}
	}
}

func (r *Registry) dropPID(pid int) {
	if r.byPID[pid] <= 1 {
		delete(r.byPID, pid)
	} else {
		r.byPID[pid]--
	}
}

// SetPID records the service process serving in (from the process mapper).
func (r *Registry) SetPID(in *Ingress, pid int) {
	if in == nil || pid <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.inflight[in.seq]; !ok || in.pid == pid {
		return
	}
	if in.pid != 0 {
		r.dropPID(in.pid)
	}
	in.pid = pid
	r.byPID[pid]++
}

// Inflight is the number of tracked in-flight ingress requests.
func (r *Registry) Inflight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inflight)
}

// IDs is the number of entries in the request-id map.
func (r *Registry) IDs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// Call describes one outbound call to attribute.
type Call struct {
	// Forwarded is set when the call carries trace headers the service
	// forwarded (method header).
	Forwarded *headers.SpanContext
	// RequestID is the correlation header value the call carries, if any.
	RequestID string
	// PID resolves the service process making the call; nil or an error
	// skips method process. It is called at most once, and only when the
	// earlier methods did not match.
	PID func() (int, error)
}

// Result is an attribution outcome.
type Result struct {
	// Method is the method that matched, or MethodNone.
	Method Method
	// Parent is the context the egress span continues (Method != MethodNone).
	Parent headers.SpanContext
	// Candidates holds up to MaxCandidates in-flight ingress span ids when
	// Method is MethodNone.
	Candidates []headers.SpanID
}

// Attribute tries the configured methods in order; it never guesses.
func (r *Registry) Attribute(c Call) Result {
	for _, m := range r.methods {
		switch m {
		case MethodHeader:
			if c.Forwarded != nil {
				return Result{Method: MethodHeader, Parent: *c.Forwarded}
			}
		case MethodRequestID:
			if c.RequestID == "" {
				continue
			}
			if ctx, ok := r.lookupID(c.RequestID); ok {
				return Result{Method: MethodRequestID, Parent: ctx}
			}
		case MethodProcess:
			if c.PID == nil {
				continue
			}
			pid, err := c.PID()
			if err != nil || pid <= 0 {
				continue
			}
			if ctx, ok := r.byProcess(pid); ok {
				return Result{Method: MethodProcess, Parent: ctx}
			}
		case MethodSoleInflight:
			if ctx, ok := r.sole(); ok {
				return Result{Method: MethodSoleInflight, Parent: ctx}
			}
		}
	}
	return Result{Method: MethodNone, Candidates: r.candidates()}
}

func (r *Registry) lookupID(id string) (headers.SpanContext, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.ids[id]
	if !ok || e.ambiguous {
		return headers.SpanContext{}, false
	}
	if e.live == 0 && r.now().Sub(e.ended) >= r.ttl {
		return headers.SpanContext{}, false
	}
	return e.ctx, true
}

func (r *Registry) byProcess(pid int) (headers.SpanContext, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byPID[pid] != 1 {
		return headers.SpanContext{}, false
	}
	for _, in := range r.inflight {
		if in.pid == pid {
			return in.Ctx, true
		}
	}
	return headers.SpanContext{}, false
}

func (r *Registry) sole() (headers.SpanContext, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inflight) != 1 {
		return headers.SpanContext{}, false
	}
	for _, in := range r.inflight {
		return in.Ctx, true
	}
	return headers.SpanContext{}, false
}

func (r *Registry) candidates() []headers.SpanID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []headers.SpanID
	for _, in := range r.inflight {
		if len(out) == MaxCandidates {
			break
		}
		out = append(out, in.Ctx.SpanID)
	}
	return out
}
