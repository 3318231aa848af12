package ruler

import (
	"context"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/rules"

	"github.com/levitated/levitated/pkg/tenant"
)

// TenantLabel is the label added to the alerts of a tenant other than the
// default one when they are sent to Alertmanager, so that equal alerts of
// two tenants stay two alerts there (and can be routed by tenant). It
// replaces a label of that name set by the rule: a tenant cannot send
// alerts as another.
const TenantLabel = "tenant"

// ChangeFinder finds the change (a change-event window or point event of
// pkg/events) that an alert firing at a time follows.
type ChangeFinder interface {
	// ChangeBefore returns the newest change of the tenant of ctx that
	// was in progress at at, or that ended (or, for a point event,
	// happened) at most within before it.
	ChangeBefore(ctx context.Context, at time.Time, within time.Duration) (Change, bool, error)
}

// Change is a change an alert followed.
type Change struct {
	// ID is the change event's id; Name its name ("deploy").
	ID, Name string
	// Start is when the change started; End when it stopped (zero while
	// in progress or for a point event).
	Start, End time.Time
	// Attributes are the event's attributes (service, version, ...).
	Attributes map[string]string
	// Link points to the change (the event's URL, or levitated's page of
	// it).
	Link string
}

// Change annotations added to an alert that fired in or soon after a
// change (Options.ChangeWindow).
const (
	AnnotationChangeID      = "change_id"
	AnnotationChangeName    = "change_event_name"
	AnnotationChangeStarted = "change_started"
	AnnotationChangeEnded   = "change_ended"
	AnnotationChangeURL     = "change_url"
	// AnnotationChangePrefix prefixes each attribute of the change:
	// change_service, change_version.
	AnnotationChangePrefix = "change_"
)

// notifyFunc sends the alerts of tenant t to every Alertmanager, as
// Prometheus' rules.SendAlerts does, with the tenant label and the change
// the alert followed.
func (r *Ruler) notifyFunc(t string) rules.NotifyFunc {
	return func(ctx context.Context, expr string, alerts ...*rules.Alert) {
		send := rules.SendAlerts(senderFunc(func(as ...*notifier.Alert) {
			for _, a := range as {
				if t != tenant.Default {
					b := labels.NewBuilder(a.Labels)
					b.Set(TenantLabel, t)
					a.Labels = b.Labels()
				}
				r.annotateChange(ctx, a)
			}
			r.notify.Send(as...)
		}), r.opts.ExternalURL)
		send(ctx, expr, alerts...)
	}
}

// annotateChange adds the change a firing alert followed, if any.
func (r *Ruler) annotateChange(ctx context.Context, a *notifier.Alert) {
	if r.src.Changes == nil || r.opts.ChangeWindow <= 0 || a.StartsAt.IsZero() {
		return
	}
	c, ok, err := r.src.Changes.ChangeBefore(ctx, a.StartsAt, r.opts.ChangeWindow)
	if err != nil {
		r.logger.Warn("find the change an alert followed", "alert", a.Name(), "err", err)
		return
	}
	if !ok {
		return
	}
	b := labels.NewBuilder(a.Annotations)
	for k, v := range c.Attributes {
		b.Set(AnnotationChangePrefix+k, v)
	}
	b.Set(AnnotationChangeID, c.ID)
	b.Set(AnnotationChangeName, c.Name)
	b.Set(AnnotationChangeStarted, c.Start.UTC().Format(time.RFC3339Nano))
	if !c.End.IsZero() {
		b.Set(AnnotationChangeEnded, c.End.UTC().Format(time.RFC3339Nano))
	}
	if c.Link != "" {
		b.Set(AnnotationChangeURL, c.Link)
	}
	a.Annotations = b.Labels()
}

type senderFunc func(...*notifier.Alert)

func (f senderFunc) Send(as ...*notifier.Alert) { f(as...) }
