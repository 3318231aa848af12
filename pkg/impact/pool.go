package impact

import (
	"context"
	"sync"
)

// DefaultWorkers is how many changes are judged at once by default. One
// judgement is a chain of dependent requests to the analysis service
// (traffic, then the signals, then the signals again without those lacking
// data), each of whose range queries run 4 at once; two chains at once keep
// a core busy while the other waits on the store, and leave ingest the
// rest (bench/RESULTS.md, "Change impact: cost").
const DefaultWorkers = 2

// judgeAll judges todo (sorted by due time) with Options.Workers workers.
// The changes of one service are judged by one worker, in order: the DORA
// series of a service are recomputed from its judgements at each one, and
// its judgements follow one another as its changes did.
func (s *Service) judgeAll(ctx context.Context, tid uint32, cfg *Config, todo []due) {
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
