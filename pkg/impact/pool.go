package impact

import (
	"context"
	"fmt"
	"sync"
)

// DefaultWorkers is how many changes are judged at once by default: one.
// On the loaded 2-core machine of bench/RESULTS.md ("Change impact: cost"),
// two workers judged 1,000 changes only 8 % faster than one (the process
// got a tenth of a core either way) and doubled the remote-write median
// latency while they ran; ingest comes first. Raise --impact.workers where
// cores are free: each worker is a chain of dependent requests to the
// analysis service (traffic, the signals, the signals again without those
// lacking data) whose range queries run 4 at once.
const DefaultWorkers = 1

// DefaultCPUShare is the share of the time the scheduler's queries take
// by default: after a query that took d, the next waits as long. With a
// query starting only while no write request is in flight (Engine, Pacer),
// ingest keeps at least half of a core's time while changes are judged.
const DefaultCPUShare = 0.5

// ValidCPUShare checks --impact.cpu-share (0 stands for the default).
func ValidCPUShare(v float64) error {
	if v == 0 || v > 0 && v <= 1 {
		return nil
	}
	return fmt.Errorf("impact: --impact.cpu-share is %g; give a share of the time in (0, 1], such as 0.5", v)
}

// judgeAll judges todo (sorted by due time) with Options.Workers workers.
// The changes of one service are judged by one worker, in order: the DORA
// series of a service are recomputed from its judgements at each one, and
// its judgements follow one another as its changes did.
func (s *Service) judgeAll(ctx context.Context, tid uint32, cfg *Config, todo []due) {
	ctx = background(ctx) // paced behind ingest (Engine)
	judge := func(d due) {
		var err error
		switch d.phase {
		case PhaseFinal:
			err = s.judgeAgain(ctx, tid, cfg, d.change, s.opts.Now())
		case PhaseEarly:
			err = s.judgeEarly(ctx, tid, cfg, d.change, s.opts.Now())
		default:
			_, err = s.judgeAndRecord(ctx, tid, cfg, d.change, s.opts.Now())
		}
		if err != nil {
			s.metrics.failures.Inc()
			s.opts.Logger.Warn("impact: judgement failed; retried at the next tick", "change", d.change.ID, "phase", d.phase, "err", err)
		}
	}
	workers := s.opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if workers == 1 || len(todo) < 2 {
		for _, d := range todo {
			if ctx.Err() != nil {
				return
			}
			judge(d)
		}
		return
	}
	// One queue per service, in the order the services' first changes
	// fell due; workers take whole queues.
	var order []string
	byService := map[string][]due{}
	for _, d := range todo {
		svc := d.change.Service
		if _, ok := byService[svc]; !ok {
			order = append(order, svc)
		}
		byService[svc] = append(byService[svc], d)
	}
	queues := make(chan []due, len(order))
	for _, svc := range order {
		queues <- byService[svc]
	}
	close(queues)
	var wg sync.WaitGroup
	for range min(workers, len(order)) {
		wg.Go(func() {
			for q := range queues {
				for _, d := range q {
					if ctx.Err() != nil {
						return
					}
					judge(d)
				}
			}
		})
	}
	wg.Wait()
}
