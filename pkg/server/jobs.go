package server

import (
	"context"
	"log/slog"
)

// This file is the one lifecycle of the server's background work: the
// store's checkpoints, event retention, the ruler, Kayenta's executions,
// the change-impact scheduler. Each is a named job, added while New builds
// the server (jobs.add), started by Run in the order added once the store
// is open and every handler built, and stopped on shutdown in reverse
// order, after the listener drained and before the engine and the store
// close. A job that returns an error before it is told to stop is logged
// with its name and stops the server, as a failed store does.

// job is one piece of background work: run works until ctx ends.
type job struct {
	name string
	run  func(ctx context.Context) error
}

// jobs runs the server's jobs.
type jobs struct {
	logger  *slog.Logger
	list    []job
	running []running
	failed  chan error // the first job error; buffered
}

type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func newJobs(logger *slog.Logger) *jobs {
	return &jobs{logger: logger, failed: make(chan error, 1)}
}

// add appends a job; jobs start in the order added.
func (g *jobs) add(name string, run func(ctx context.Context) error) {
	g.list = append(g.list, job{name: name, run: run})
}

// start starts every job, each in its own goroutine with its own context.
func (g *jobs) start() {
	for _, j := range g.list {
		ctx, cancel := context.WithCancel(context.Background())
		r := running{name: j.name, cancel: cancel, done: make(chan struct{})}
		g.running = append(g.running, r)
		go func() {
			defer close(r.done)
			err := j.run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			g.logger.Error("background job failed; stopping", "job", j.name, "err", err)
			select {
			case g.failed <- err:
			default:
			}
		}()
	}
}

// failure delivers the first error of a job.
func (g *jobs) failure() <-chan error { return g.failed }

// stop stops the jobs in reverse order, each before the next, and waits
// for every one.
func (g *jobs) stop() {
	for i := len(g.running) - 1; i >= 0; i-- {
		r := g.running[i]
		r.cancel()
		<-r.done
	}
	g.running = nil
}
