package stitch

import (
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
	// beyond it are served but not tracked, and while any is in flight the
	// process and sole_inflight methods, which need the whole set, answer
	// nothing.
	MaxInflight int
	// MaxIDs caps the ended entries of the request-id map, kept for IDTTL
	// after their request ended; the oldest is evicted first. Ids of
	// in-flight requests are never evicted (MaxInflight bounds them).
	MaxIDs int
	// IDTTL is how long an id stays after its request ended, so a call made
	// after the inbound response (fire-and-forget work) is still stitched.
	IDTTL time.Duration
	// Procs maps connections to the service processes holding them
	// (a ProcMapper). Attribute asks it only for method process, after the
	// call arrived, so every connection that could have caused the call
	// was accepted by then. Nil disables method process.
	Procs Resolver
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Ingress is one in-flight inbound request of the service. The caller owns
// it (it may live in pooled per-request state): fill Ctx, RequestID and
// Data, call Begin, and End before reusing it.
type Ingress struct {
	// Ctx names the ingress SERVER span egress calls become children of.
	Ctx headers.SpanContext
	// RequestID is the correlation id the request carried or was given.
	RequestID string
	// Data is the caller's, handed back in Result while the request is in
	// flight (never after End: an id kept for its TTL holds no Data).
	Data any

	seq     uint64 // 0 when not tracked
	over    bool   // counted in Registry.overflow
	connKey any    // the upstream connection, for method process
	conn    Conn
	hasConn bool
	pid     int // service process serving it, 0 while unknown
}

// idEntry is one request id: live while requests with it are in flight,
// then kept for the TTL in the ended list (oldest first).
type idEntry struct {
	id         string
	ctx        headers.SpanContext
	data       any
	live       int
	ambiguous  bool
	ended      time.Time
	prev, next *idEntry // the ended list, while live == 0
}

// Registry is the attribution state one service shares between its ingress
// and egress handlers. It is safe for concurrent use.
type Registry struct {
	methods     []Method
	maxInflight int
	maxIDs      int
	ttl         time.Duration
	procs       Resolver
	now         func() time.Time

	mu         sync.Mutex
	seq        uint64
	inflight   map[uint64]*Ingress
	overflow   int // untracked in-flight requests (beyond MaxInflight)
	ids        map[string]*idEntry
	head, tail *idEntry // ended ids, oldest first
	ended      int
}

// NewRegistry returns an empty Registry bounded by cfg.
func NewRegistry(cfg Config) *Registry {
	r := &Registry{
		methods:     cfg.Methods,
		maxInflight: cfg.MaxInflight,
		maxIDs:      cfg.MaxIDs,
		ttl:         cfg.IDTTL,
		procs:       cfg.Procs,
		now:         cfg.Now,
		inflight:    make(map[uint64]*Ingress),
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

// Begin registers an inbound request. It reports false when MaxInflight
// requests are already tracked: in is then only counted, and End must
// still be called.
func (r *Registry) Begin(in *Ingress) bool {
	in.seq, in.over, in.connKey, in.hasConn, in.pid = 0, false, nil, false, 0
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inflight) >= r.maxInflight {
		r.overflow++
		in.over = true
		return false
	}
	r.seq++
	in.seq = r.seq
	r.inflight[in.seq] = in
	if in.RequestID != "" {
		r.beginID(in)
	}
	return true
}

func (r *Registry) beginID(in *Ingress) {
	if e, ok := r.ids[in.RequestID]; ok {
		if e.live > 0 {
			// Two live requests with one id: no call can tell them
			// apart, and a client must not join another's trace by
			// reusing its id.
			e.ambiguous = true
		} else {
			r.unlink(e)
			e.ctx, e.data, e.ambiguous = in.Ctx, in.Data, false
		}
		e.live++
		return
	}
	r.expire()
	r.ids[in.RequestID] = &idEntry{id: in.RequestID, ctx: in.Ctx, data: in.Data, live: 1}
}

// unlink takes an ended entry off the ended list.
func (r *Registry) unlink(e *idEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		r.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		r.tail = e.prev
	}
	e.prev, e.next = nil, nil
	r.ended--
}

// pushEnded appends a just-ended entry, evicting the oldest beyond MaxIDs.
func (r *Registry) pushEnded(e *idEntry) {
	e.prev, e.next = r.tail, nil
	if r.tail != nil {
		r.tail.next = e
	} else {
		r.head = e
	}
	r.tail = e
	r.ended++
	for r.ended > r.maxIDs {
		old := r.head
		r.unlink(old)
		delete(r.ids, old.id)
	}
}

// expire drops ended entries past their TTL, oldest first.
func (r *Registry) expire() {
	now := r.now()
	for r.head != nil && now.Sub(r.head.ended) >= r.ttl {
		old := r.head
		r.unlink(old)
		delete(r.ids, old.id)
	}
}

// End unregisters an inbound request when its response is done.
func (r *Registry) End(in *Ingress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in.over {
		in.over = false
		r.overflow--
		return
	}
	if in.seq == 0 {
		return
	}
	delete(r.inflight, in.seq)
	in.seq = 0
	in.connKey = nil
	if in.RequestID == "" {
		return
	}
	if e, ok := r.ids[in.RequestID]; ok && e.live > 0 {
		e.live--
		if e.live == 0 {
			// The id outlives its request for the TTL, without the
			// request's Data.
			e.ended, e.data = r.now(), nil
			r.pushEnded(e)
		}
	}
}

// SetConn records the upstream connection serving in: key identifies the
// connection (it is the cache key of Config.Procs), c is its service
// side. A request retried on another connection records the last one.
func (r *Registry) SetConn(in *Ingress, key any, c Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in.seq == 0 {
		return
	}
	in.connKey, in.conn, in.hasConn, in.pid = key, c, true, 0
}

// Inflight is the number of in-flight ingress requests, tracked or not.
func (r *Registry) Inflight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inflight) + r.overflow
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
	// ConnKey identifies the connection the call came in on while it is
	// open (the net.Conn), Conn is its service side (Local: the service
	// process's address); a nil ConnKey skips method process.
	ConnKey any
	Conn    Conn
}

// Result is an attribution outcome.
type Result struct {
	// Method is the method that matched, or MethodNone.
	Method Method
	// Parent is the context the egress span continues (Method != MethodNone).
	Parent headers.SpanContext
	// Data is the matched ingress request's Data while it is in flight.
	Data any
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
			if res, ok := r.lookupID(c.RequestID); ok {
				return res
			}
		case MethodProcess:
			if c.ConnKey == nil || r.procs == nil {
				continue
			}
			if res, ok := r.byProcess(c); ok {
				return res
			}
		case MethodSoleInflight:
			if res, ok := r.sole(); ok {
				return res
			}
		}
	}
	return Result{Method: MethodNone, Candidates: r.candidates()}
}

func (r *Registry) lookupID(id string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.ids[id]
	if !ok || e.ambiguous {
		return Result{}, false
	}
	if e.live == 0 && r.now().Sub(e.ended) >= r.ttl {
		return Result{}, false
	}
	return Result{Method: MethodRequestID, Parent: e.ctx, Data: e.data}, true
}

// byProcess answers the one in-flight request served by the process that
// made the call. The caller's process and the in-flight requests whose
// process is not known yet are resolved together, outside the lock (the
// Resolver may read /proc); a request whose connection that process does
// not hold was not served by it: another process holds it, or none yet
// because it waits in the service's accept queue, and its request cannot
// have made the call.
func (r *Registry) byProcess(c Call) (Result, bool) {
	var todo []Socket
	r.mu.Lock()
	if r.overflow > 0 {
		r.mu.Unlock()
		return Result{}, false
	}
	var groups pidGroups
	for seq, in := range r.inflight {
		if in.hasConn && in.pid == 0 {
			todo = append(todo, Socket{Key: in.connKey, Conn: in.conn, seq: seq})
		} else if in.pid != 0 {
			groups.add(in.pid)
		}
	}
	r.mu.Unlock()
	if todo == nil && groups.unanswerable() {
		// Every request in flight is placed, and in processes that
		// hold more than MaxCandidates of them: whichever made the
		// call, disambiguate would not answer. /proc is not read.
		return Result{}, false
	}
	pid, err := r.procs.Resolve(Socket{Key: c.ConnKey, Conn: c.Conn}, todo)
	if err != nil || pid <= 0 {
		return Result{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range todo {
		if s.PID == 0 {
			continue
		}
		if in, ok := r.inflight[s.seq]; ok && in.connKey == s.Key && in.pid == 0 {
			in.pid = s.PID
		}
	}
	if r.overflow > 0 {
		return Result{}, false
	}
	var match *Ingress
	var same []Socket // the requests of pid, when more than one
	for seq, in := range r.inflight {
		if in.pid != pid {
			continue
		}
		if match != nil && same == nil {
			same = append(same, Socket{Key: match.connKey, PID: pid, seq: match.seq})
		}
		if match != nil {
			same = append(same, Socket{Key: in.connKey, PID: pid, seq: seq})
		}
		match = in
	}
	if same == nil {
		if match == nil {
			return Result{}, false
		}
		return Result{Method: MethodProcess, Parent: match.Ctx, Data: match.Data}, true
	}
	return r.disambiguate(pid, same)
}

// pidGroups counts the placed requests in flight of up to len(pids)
// processes.
type pidGroups struct {
	pids, counts [4]int
	n            int
	overflow     bool // more processes than pids holds
}

func (g *pidGroups) add(pid int) {
	for i := range g.n {
		if g.pids[i] == pid {
			g.counts[i]++
			return
		}
	}
	if g.n == len(g.pids) {
		g.overflow = true
		return
	}
	g.pids[g.n], g.counts[g.n] = pid, 1
	g.n++
}

// unanswerable reports that no call can be attributed by process: no
// request is placed, or every process counted holds more than
// MaxCandidates of them.
func (g *pidGroups) unanswerable() bool {
	if g.overflow {
		return false
	}
	for i := range g.n {
		if g.counts[i] <= MaxCandidates {
			return false
		}
	}
	return true
}

// disambiguate answers among several in-flight requests placed in one
// process: those whose connection the process closed were answered (the
// proxy is still finishing them), and if exactly one connection is still
// held, its request made the call. Otherwise no guess. Called with r.mu
// held; it releases it while the Resolver reads /proc.
func (r *Registry) disambiguate(pid int, same []Socket) (Result, bool) {
	if len(same) > MaxCandidates {
		return Result{}, false
	}
	r.mu.Unlock()
	err := r.procs.Verify(pid, same)
	r.mu.Lock()
	if err != nil {
		return Result{}, false
	}
	var match *Ingress
	for _, s := range same {
		in, ok := r.inflight[s.seq]
		if !ok || in.connKey != s.Key || in.pid != pid {
			continue // ended, or moved, meanwhile
		}
		if s.PID != pid {
			in.pid = -1 // answered: never this process's caller again
			continue
		}
		if match != nil {
			return Result{}, false // two requests in one process
		}
		match = in
	}
	if match == nil {
		return Result{}, false
	}
	return Result{Method: MethodProcess, Parent: match.Ctx, Data: match.Data}, true
}

func (r *Registry) sole() (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inflight) != 1 || r.overflow > 0 {
		return Result{}, false
	}
	for _, in := range r.inflight {
		return Result{Method: MethodSoleInflight, Parent: in.Ctx, Data: in.Data}, true
	}
	return Result{}, false
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
