// Package yield gives ingest the right of way over background work. Write
// requests mark themselves in flight (Ingest.Begin); background work runs
// its steps through a Pacer, which starts a step only while no write is in
// flight (or once it has waited MaxWait), runs one step at a time across
// its callers, and rests after each step so that the steps take at most a
// share of the time.
//
// Go has no goroutine priorities; this is the next best thing for work
// made of short steps (the queries of a judgement): a step that has
// started runs to its end, but none starts while ingest is busy, and the
// rests leave the CPU to ingest between steps.
package yield

import (
	"context"
	"sync"
	"time"
)

// Ingest counts the write requests in flight. The zero value is ready.
type Ingest struct {
	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed while none is in flight; nil until the first Begin
}

// Begin marks a write request in flight; end marks it done.
func (in *Ingest) Begin() (end func()) {
	in.mu.Lock()
	if in.inflight == 0 {
		in.idle = make(chan struct{})
	}
	in.inflight++
	in.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			in.mu.Lock()
			in.inflight--
			if in.inflight == 0 {
				close(in.idle)
			}
			in.mu.Unlock()
		})
	}
}

// InFlight returns the write requests in flight.
func (in *Ingest) InFlight() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.inflight
}

// Idle returns a channel closed once no write request is in flight (at
// once if none is).
func (in *Ingest) Idle() <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.inflight == 0 {
		return closed
	}
	return in.idle
}

var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// DefaultMaxWait is how long a step waits for ingest to be idle before it
// runs anyway, so that background work still advances under ingest that
// never pauses.
const DefaultMaxWait = time.Second

// Pacer runs background steps behind ingest.
type Pacer struct {
	ingest  *Ingest
	share   float64
	maxWait time.Duration
	turn    chan struct{} // one step at a time
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	stats Stats
}

// Stats are what a Pacer did.
type Stats struct {
	Steps int64
	// Waited is the time steps waited for ingest to be idle; WaitedOut
	// counts the steps that ran after MaxWait with ingest still busy.
	Waited    time.Duration
	WaitedOut int64
	// Ran is the time the steps took, Rested the rests after them.
	Ran, Rested time.Duration
}

// NewPacer returns a pacer behind in (nil: no ingest to wait for) whose
// steps take at most share (0 < share ≤ 1) of the time: after a step that
// took d, the next starts no sooner than d×(1−share)/share later. maxWait
// ≤ 0 means DefaultMaxWait.
func NewPacer(in *Ingest, share float64, maxWait time.Duration) *Pacer {
	if !(share > 0) || share > 1 {
		share = 1
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	return &Pacer{ingest: in, share: share, maxWait: maxWait, turn: make(chan struct{}, 1), now: time.Now, sleep: sleepCtx}
}

// Run waits for a turn, then runs step: after waiting (at most MaxWait)
// for no write request to be in flight. It rests after step, still holding
// the turn. It returns ctx's error if ctx ends before step runs (step then
// does not run) or during the rest.
func (p *Pacer) Run(ctx context.Context, step func()) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	var waited time.Duration
	out := false
	if p.ingest != nil {
		w0 := p.now()
		select {
		case <-p.ingest.Idle():
		default:
			t := time.NewTimer(p.maxWait)
			select {
			case <-p.ingest.Idle():
			case <-t.C:
				out = true
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			t.Stop()
		}
		waited = p.now().Sub(w0)
	}
	t0 := p.now()
	step()
	ran := p.now().Sub(t0)
	rest := time.Duration(float64(ran) * (1 - p.share) / p.share)
	p.mu.Lock()
	p.stats.Steps++
	p.stats.Waited += waited
	if out {
		p.stats.WaitedOut++
	}
	p.stats.Ran += ran
	p.stats.Rested += rest
	p.mu.Unlock()
	if rest > 0 {
		return p.sleep(ctx, rest)
	}
	return nil
}

// Stats returns what the pacer did so far.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
