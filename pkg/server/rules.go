package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/prometheus/rules"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/tenant"
)

// newRuler builds the ruler (pkg/ruler) over what the HTTP API queries
// (the engine with each tenant's limits, samples merged with change-event
// series) and the write path's appenders (with each tenant's series
// limit), adds its loop to the background work, and returns the handler of
// POST /-/reload. Prometheus' API answers /api/v1/rules and /api/v1/alerts
// from it (api.go).
func (s *Server) newRuler() (reload http.Handler, err error) {
	o := s.opts.Rules
	if o.ExternalURL == "" {
		o.ExternalURL = "http://" + s.opts.ListenAddress
	}
	r, err := ruler.New(o, ruler.Sources{
		Engine:     s.apiEngine(),
		Queryable:  s.query,
		Appendable: s.writeStore(),
		Parser:     s.opts.Query.Parser(),
		Changes:    changeFinder{s: s, externalURL: strings.TrimSuffix(o.ExternalURL, "/")},
	})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	s.ruler = r
	s.jobs.add("ruler", r.Run)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := s.Reload(req.Context()); err != nil {
			// Prometheus' /-/reload answers 500 with the reason.
			writeError(w, DialectText, fmt.Errorf("failed to reload config: %w", err))
			return
		}
		w.WriteHeader(http.StatusOK)
	}), nil
}

// Reload re-reads the rule files, the Alertmanager configuration and the
// change-impact configuration (on SIGHUP and POST /-/reload). A bad file
// is refused with its file, line and reason, and what was in force stays.
func (s *Server) Reload(ctx context.Context) error {
	var errs []error
	if err := s.ruler.Reload(ctx); err != nil {
		errs = append(errs, err)
	} else {
		s.logger.Info("rules reloaded", "tenants", len(s.ruler.Tenants()))
	}
	if s.impact != nil {
		if err := s.impact.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rulesRetriever answers /api/v1/rules and /api/v1/alerts with the rules
// of the caller's tenant.
func (s *Server) rulesRetriever(ctx context.Context) v1.RulesRetriever {
	return tenantRules{r: s.ruler, ctx: ctx}
}

func (s *Server) alertmanagerRetriever(context.Context) v1.AlertmanagerRetriever { return s.ruler }

type tenantRules struct {
	r   *ruler.Ruler
	ctx context.Context
}

func (t tenantRules) RuleGroups() []*rules.Group           { return t.r.RuleGroups(t.ctx) }
func (t tenantRules) AlertingRules() []*rules.AlertingRule { return t.r.AlertingRules(t.ctx) }

// changeFinder finds, in the change-event store, the change an alert
// followed: the newest window in progress when the alert fired or ended
// at most `within` before, or a point event at most `within` before.
// Windows are looked for among the changes that started at most
// changeLookback before the alert.
type changeFinder struct {
	s           *Server
	externalURL string
}

// changeLookback bounds how long before an alert a change may have
// started and still be named by it.
const changeLookback = 24 * time.Hour

func (f changeFinder) ChangeBefore(ctx context.Context, at time.Time, within time.Duration) (ruler.Change, bool, error) {
	id, err := tenant.ID(ctx, f.s.db)
	if err != nil {
		return ruler.Change{}, false, err
	}
	q := events.Query{Start: at.Add(-max(within, changeLookback)), End: at, Limit: events.MaxLimit}
	var best *events.Event
	var bestStart time.Time
	for {
		page, next, err := f.s.events.List(ctx, id, q)
		if err != nil {
			return ruler.Change{}, false, err
		}
		for i := range page {
			e := &page[i]
			if e.State != events.StateStart {
				continue // a stop's window is its start's
			}
			start, end := e.Time, e.Time
			if e.Window != nil {
				start, end = e.Window.Start, e.Window.End
				if e.Window.Open() {
					end = at
				}
			}
			if start.After(at) || end.Before(at.Add(-within)) {
				continue
			}
			if best == nil || !start.Before(bestStart) {
				best, bestStart = e, start
			}
		}
		if next == "" {
			break
		}
		q.After = next
	}
	if best == nil {
		return ruler.Change{}, false, nil
	}
	c := ruler.Change{ID: best.ID, Name: best.Name, Start: bestStart, Attributes: best.Attributes, Link: best.URL}
	if best.Window != nil && !best.Window.Open() {
		c.End = best.Window.End
	}
	if c.Link == "" {
		c.Link = f.externalURL + "/api/v1/events/" + url.PathEscape(best.ID)
	}
	return c, true, nil
}
