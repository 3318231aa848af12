package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/levitated/levitated/pkg/events"
)

// Options configure a Watcher.
type Options struct {
	// Namespace limits the watch to one namespace; "" is every namespace.
	Namespace string
	// LabelSelector limits the watch to matching objects ("app=checkout",
	// "tier in (web,api)"); "" is every object.
	LabelSelector string
	// Kinds are the kinds followed, names of Kinds; empty is all of them.
	Kinds []string
	// SaveInterval is how often a changed State is saved.
	SaveInterval time.Duration
	// RetryInterval is the wait before listing again after an error (and
	// the first wait between retries of an event).
	RetryInterval time.Duration
	Logger        *slog.Logger
}

// DefaultOptions returns every kind, every namespace, the State saved every
// second.
func DefaultOptions() Options {
	return Options{SaveInterval: time.Second, RetryInterval: 5 * time.Second}
}

// Validate lists every bad field in one error.
func (o *Options) Validate() error {
	var errs []error
	for _, k := range o.Kinds {
		if _, ok := Kinds[k]; !ok {
			names := make([]string, 0, len(Kinds))
			for n := range Kinds {
				names = append(names, n)
			}
			sort.Strings(names)
			errs = append(errs, fmt.Errorf("kinds: unknown kind %q (known: %s)", k, strings.Join(names, ", ")))
		}
	}
	if _, err := labels.Parse(o.LabelSelector); err != nil {
		errs = append(errs, fmt.Errorf("label selector %q: %w", o.LabelSelector, err))
	}
	if o.SaveInterval <= 0 {
		errs = append(errs, fmt.Errorf("save interval %s: must be positive", o.SaveInterval))
	}
	if o.RetryInterval <= 0 {
		errs = append(errs, fmt.Errorf("retry interval %s: must be positive", o.RetryInterval))
	}
	return errors.Join(errs...)
}

// Watcher lists and watches the API server and sends the events of each
// change to a Sink.
type Watcher struct {
	dyn   dynamic.Interface
	meta  metadata.Interface
	sink  Sink
	store StateStore
	// skip is the State's own ConfigMap ("namespace/name"), not followed.
	skip string
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	state *State
	dirty bool
}

// New returns a Watcher. skipConfigMap ("namespace/name") is the State's
// own ConfigMap, whose changes are not events.
func New(dyn dynamic.Interface, meta metadata.Interface, sink Sink, store StateStore, skipConfigMap string, opts Options) (*Watcher, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("kubeevents: %w", err)
	}
	if len(opts.Kinds) == 0 {
		for n := range Kinds {
			opts.Kinds = append(opts.Kinds, n)
		}
		sort.Strings(opts.Kinds)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{dyn: dyn, meta: meta, sink: sink, store: store, skip: skipConfigMap, opts: opts, log: log}, nil
}

// Run follows every kind until ctx ends, then saves the State. It returns
// an error only if the State cannot be loaded.
func (w *Watcher) Run(ctx context.Context) error {
	st, err := w.store.Load(ctx)
	if err != nil {
		return err
	}
	w.state = st
	var wg sync.WaitGroup
	for _, name := range w.opts.Kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.follow(ctx, Kinds[name])
		}()
	}
	tick := time.NewTicker(w.opts.SaveInterval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		if done {
			wg.Wait()
		}
		w.save(context.WithoutCancel(ctx))
	}
	return nil
}

func (w *Watcher) save(ctx context.Context) {
	w.mu.Lock()
	if !w.dirty {
		w.mu.Unlock()
		return
	}
	snapshot := &State{Kinds: maps(w.state.Kinds), Objects: make(map[string]ObjectState, len(w.state.Objects))}
	for k, v := range w.state.Objects {
		snapshot.Objects[k] = v
	}
	w.dirty = false
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.store.Save(ctx, snapshot); err != nil {
		w.log.Error("kube-events: state not saved", "err", err)
		w.mu.Lock()
		w.dirty = true
		w.mu.Unlock()
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// follow lists a kind, then watches it from the list's resourceVersion,
// listing again when the watch cannot continue.
func (w *Watcher) follow(ctx context.Context, k Kind) {
	notServed := false
	for ctx.Err() == nil {
		rv, err := w.list(ctx, k)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if apierrors.IsNotFound(err) {
				if !notServed {
					w.log.Info("kube-events: kind not served by the API server; retrying", "kind", k.Name, "resource", k.Resource.String())
					notServed = true
				}
			} else {
				w.log.Warn("kube-events: list failed; retrying", "kind", k.Name, "err", err)
			}
			sleep(ctx, w.opts.RetryInterval)
			continue
		}
		notServed = false
		for ctx.Err() == nil {
			err := w.watch(ctx, k, &rv)
			if ctx.Err() != nil {
				return
			}
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				w.log.Info("kube-events: watch expired; listing again", "kind", k.Name)
				break
			}
			if err != nil {
				w.log.Warn("kube-events: watch failed; watching again", "kind", k.Name, "err", err)
				sleep(ctx, w.opts.RetryInterval)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func objectKey(k Kind, obj *unstructured.Unstructured) string {
	return k.Name + "/" + obj.GetNamespace() + "/" + obj.GetName()
}

// list lists a kind, handles every object against the State, and the
// objects of the State that are gone, and returns the list's
// resourceVersion.
func (w *Watcher) list(ctx context.Context, k Kind) (string, error) {
	opts := metav1.ListOptions{LabelSelector: w.opts.LabelSelector}
	var items []*unstructured.Unstructured
	var rv string
	if k.metadataOnly {
		l, err := w.meta.Resource(k.Resource).Namespace(w.opts.Namespace).List(ctx, opts)
		if err != nil {
			return "", err
		}
		rv = l.ResourceVersion
		for i := range l.Items {
			u, err := fromMetadata(&l.Items[i])
			if err != nil {
				return "", err
			}
			items = append(items, u)
		}
	} else {
		l, err := w.dyn.Resource(k.Resource).Namespace(w.opts.Namespace).List(ctx, opts)
		if err != nil {
			return "", err
		}
		rv = l.GetResourceVersion()
		for i := range l.Items {
			items = append(items, &l.Items[i])
		}
	}
	w.mu.Lock()
	_, listedBefore := w.state.Kinds[k.Name]
	w.mu.Unlock()
	seen := map[string]bool{}
	for _, obj := range items {
		seen[objectKey(k, obj)] = true
		if err := w.handle(ctx, k, obj, !listedBefore); err != nil {
			return "", err
		}
	}
	// Objects deleted while no watcher ran.
	w.mu.Lock()
	var gone []string
	prefix := k.Name + "/"
	if w.opts.Namespace != "" {
		prefix += w.opts.Namespace + "/"
	}
	for key := range w.state.Objects {
		if strings.HasPrefix(key, prefix) && !seen[key] {
			gone = append(gone, key)
		}
	}
	w.mu.Unlock()
	sort.Strings(gone)
	for _, key := range gone {
		parts := strings.SplitN(key, "/", 3)
		stub := &unstructured.Unstructured{Object: map[string]any{}}
		stub.SetNamespace(parts[1])
		stub.SetName(parts[2])
		if err := w.handleDelete(ctx, k, stub); err != nil {
			return "", err
		}
	}
	w.mu.Lock()
	w.state.Kinds[k.Name] = rv
	w.dirty = true
	w.mu.Unlock()
	return rv, nil
}

// watch watches a kind from *rv until the watch ends, handling each change
// and advancing *rv.
func (w *Watcher) watch(ctx context.Context, k Kind, rv *string) error {
	opts := metav1.ListOptions{LabelSelector: w.opts.LabelSelector, ResourceVersion: *rv, AllowWatchBookmarks: true}
	var wi watch.Interface
	var err error
	if k.metadataOnly {
		wi, err = w.meta.Resource(k.Resource).Namespace(w.opts.Namespace).Watch(ctx, opts)
	} else {
		wi, err = w.dyn.Resource(k.Resource).Namespace(w.opts.Namespace).Watch(ctx, opts)
	}
	if err != nil {
		return err
	}
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return nil
			}
			if ev.Type == watch.Error {
				return apierrors.FromObject(ev.Object)
			}
			obj, err := toUnstructured(ev.Object)
			if err != nil {
				return err
			}
			if w.skipped(k, obj) {
				// The state's own ConfigMap: recording its version would
				// save the state again, and so on.
				*rv = obj.GetResourceVersion()
				continue
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				err = w.handle(ctx, k, obj, false)
			case watch.Deleted:
				err = w.handleDelete(ctx, k, obj)
			}
			if err != nil {
				return err
			}
			// The kind's version is saved with the next change of an
			// object, not on its own: a busy cluster's status updates
			// would otherwise rewrite the state every SaveInterval.
			*rv = obj.GetResourceVersion()
			w.mu.Lock()
			w.state.Kinds[k.Name] = *rv
			w.mu.Unlock()
		}
	}
}

func toUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	switch v := o.(type) {
	case *unstructured.Unstructured:
		return v, nil
	case *metav1.PartialObjectMetadata:
		return fromMetadata(v)
	}
	return nil, fmt.Errorf("kubeevents: unexpected watch object %T", o)
}

func fromMetadata(m *metav1.PartialObjectMetadata) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(m)
	if err != nil {
		return nil, fmt.Errorf("kubeevents: convert %s/%s: %w", m.Namespace, m.Name, err)
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// skipped reports whether obj is the state's own ConfigMap.
func (w *Watcher) skipped(k Kind, obj *unstructured.Unstructured) bool {
	return k.Name == "ConfigMap" && obj.GetNamespace()+"/"+obj.GetName() == w.skip
}

// handle derives the events of one object's version, sends them and
// records the object's new state. baseline: the kind's first list, which
// records without sending.
func (w *Watcher) handle(ctx context.Context, k Kind, obj *unstructured.Unstructured, baseline bool) error {
	if w.skipped(k, obj) {
		return nil
	}
	key := objectKey(k, obj)
	w.mu.Lock()
	prev, ok := w.state.Objects[key]
	w.mu.Unlock()
	var prevp *ObjectState
	if ok && prev.UID == string(obj.GetUID()) {
		if prev.ResourceVersion == obj.GetResourceVersion() {
			return nil // handled before (a restart, or a relist)
		}
		prevp = &prev
	} else if ok {
		// The same name, another object: the old one was deleted.
		if err := w.send(ctx, deleted(k, prev, obj, time.Now())); err != nil {
			return err
		}
	}
	next, evs := k.diff(prevp, obj)
	if baseline {
		next.Open, next.Attrs, next.Stage, next.StageAttrs = false, nil, "", nil
		evs = nil
	}
	if err := w.send(ctx, evs); err != nil {
		return err
	}
	w.mu.Lock()
	w.state.Objects[key] = next
	w.dirty = true
	w.mu.Unlock()
	return nil
}

func (w *Watcher) handleDelete(ctx context.Context, k Kind, obj *unstructured.Unstructured) error {
	if w.skipped(k, obj) {
		return nil
	}
	key := objectKey(k, obj)
	w.mu.Lock()
	prev, ok := w.state.Objects[key]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	if err := w.send(ctx, deleted(k, prev, obj, time.Now())); err != nil {
		return err
	}
	w.mu.Lock()
	delete(w.state.Objects, key)
	w.dirty = true
	w.mu.Unlock()
	return nil
}

// send sends events in order, retrying each until it is accepted, refused
// for good (logged and skipped) or ctx ends.
func (w *Watcher) send(ctx context.Context, evs []events.Event) error {
	for _, e := range evs {
		if err := events.Validate(&e, events.Limits{}); err != nil {
			w.log.Error("kube-events: event not valid; skipped", "key", e.IdempotencyKey, "err", err)
			continue
		}
		wait := w.opts.RetryInterval
		for {
			err := w.sink.Send(ctx, e)
			if err == nil {
				w.log.Debug("kube-events: sent", "name", e.Name, "state", e.State.String(), "key", e.IdempotencyKey)
				break
			}
			if errors.Is(err, ErrRejected) {
				w.log.Error("kube-events: event refused; skipped", "key", e.IdempotencyKey, "err", err)
				break
			}
			w.log.Warn("kube-events: event not sent; retrying", "key", e.IdempotencyKey, "err", err)
			sleep(ctx, wait)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait = min(2*wait, time.Minute)
		}
	}
	return nil
}
