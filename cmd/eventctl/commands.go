package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
)

// Exit codes of eventctl itself (run exits with its command's status).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `Usage: eventctl COMMAND [flags] [args]

Commands:
  start NAME [flags]              store a start event; print its id
  stop NAME [flags]               store a stop event; it closes the latest open
                                  window of NAME whose attributes it has
  run NAME [flags] -- COMMAND...  start, run COMMAND, stop with exit_code and
                                  duration_seconds; exit with COMMAND's status
  list [flags]                    list events
  get ID                          show one event
  tail [flags]                    print new events as they are stored
  impact ID                       show the judgement of a change (its start,
                                  stop or point event); exit 1 if it has none
  gate --service S [flags]        ask the deployment gate; exit 0 to promote,
                                  1 to block (or if the gate cannot answer)

Run 'eventctl COMMAND -h' for the flags of a command.
Environment: LEVITATED_SERVER, LEVITATED_TOKEN, LEVITATED_ORG.
`

var synopsis = map[string]string{
	"start":  "start NAME [flags]",
	"stop":   "stop NAME [flags]",
	"run":    "run NAME [flags] -- COMMAND [ARGS...]",
	"list":   "list [flags]",
	"get":    "get ID [flags]",
	"tail":   "tail [flags]",
	"impact": "impact ID [flags]",
	"gate":   "gate --service SERVICE [flags]",
}

// config holds the flags every command has.
type config struct {
	server  string
	token   string
	org     string
	retries int
	backoff time.Duration
	timeout time.Duration
	output  string
}

func (c *config) register(fs *flag.FlagSet, e env) {
	server := e.getenv("LEVITATED_SERVER")
	if server == "" {
		server = "http://127.0.0.1:9090"
	}
	fs.StringVar(&c.server, "server", server, "levitated server URL (env LEVITATED_SERVER)")
	fs.StringVar(&c.token, "token", "", "API token (default $LEVITATED_TOKEN; not shown here)")
	fs.StringVar(&c.org, "org", e.getenv("LEVITATED_ORG"), "tenant, sent as X-Scope-OrgID when the server trusts it (env LEVITATED_ORG)")
	fs.IntVar(&c.retries, "retries", 3, "retries when the server is unreachable")
	fs.DurationVar(&c.backoff, "retry-backoff", 500*time.Millisecond, "wait before the first retry; doubles each time")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of each attempt")
	fs.StringVar(&c.output, "o", "text", "output: text or json")
}

// eventFlags are the flags of start, stop and run.
type eventFlags struct {
	attrs    attrFlag
	text     string
	url      string
	at       string
	key      string
	source   string
	value    string
	startID  string
	startKey string
	strict   bool // run: --require-server
	// failOnWarning (start, stop: --strict) exits 1 when the server warns:
	// a stop that closed no window, a start beside an identical open one.
	failOnWarning bool
}

type attrFlag map[string]string

func (a attrFlag) String() string { return "" }

func (a attrFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	a[k] = v
	return nil
}

func (f *eventFlags) register(fs *flag.FlagSet, cmd string) {
	f.attrs = attrFlag{}
	fs.Var(f.attrs, "attr", "attribute key=value (repeatable)")
	fs.StringVar(&f.text, "text", "", "free-text description")
	fs.StringVar(&f.url, "url", "", "link (http or https)")
	fs.StringVar(&f.at, "time", "", "event time: RFC 3339 or Unix seconds/milliseconds (default: when received)")
	fs.StringVar(&f.source, "source", "eventctl", "source of the event")
	fs.StringVar(&f.value, "value", "", "value of the last9_change_events sample")
	if cmd != "run" {
		fs.StringVar(&f.key, "key", "", "idempotency key (default: a random one, kept across retries)")
	}
	if cmd == "start" || cmd == "stop" {
		fs.BoolVar(&f.failOnWarning, "strict", false, "exit 1 if the server warns (a stop that closed no window, a start that leaves an identical window open); the event is stored either way")
	}
	if cmd == "stop" {
		fs.StringVar(&f.startID, "start-id", "", "close the window of this start")
		fs.StringVar(&f.startKey, "start-key", "", "close the window of the start with this idempotency key")
	}
	if cmd == "run" {
		fs.BoolVar(&f.strict, "require-server", false, "do not run COMMAND if the start cannot be stored (default: warn and run it)")
	}
}

func (f *eventFlags) event(name, state string) (*levitatedv1.Event, error) {
	e := &levitatedv1.Event{
		Name: name, State: state, Text: f.text, Url: f.url, Source: f.source,
		IdempotencyKey: f.key, StartId: f.startID, StartKey: f.startKey,
	}
	if len(f.attrs) > 0 {
		e.Attributes = map[string]string{}
		for k, v := range f.attrs {
			e.Attributes[k] = v
		}
	}
	if f.at != "" {
		t, err := events.ParseTime("--time", f.at)
		if err != nil {
			return nil, err
		}
		e.Timestamp = timestamppb.New(t)
	}
	if f.value != "" {
		v, err := strconv.ParseFloat(f.value, 64)
		if err != nil {
			return nil, fmt.Errorf("--value: %q is not a number", f.value)
		}
		e.Value = &v
	}
	return e, nil
}

// parseInterspersed parses flags before and after positional arguments
// ("start deploy --attr a=b" and "start --attr a=b deploy").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, args := args[0], args[1:]
	var command []string
	if cmd == "run" {
		for i, a := range args {
			if a == "--" {
				args, command = args[:i], args[i+1:]
				break
			}
		}
	}
	fs := flag.NewFlagSet("eventctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cfg config
	cfg.register(fs, e)
	var ef eventFlags
	var gf gateFlags
	var lf struct {
		name, start, end string
		match            stringsFlag
		open             bool
		limit            int
	}
	switch cmd {
	case "start", "stop", "run":
		ef.register(fs, cmd)
	case "list", "tail":
		fs.StringVar(&lf.name, "name", "", "only events with this name")
		fs.Var(&lf.match, "match", `label matcher over event_name, event_state and attributes, as in PromQL: service="api" (repeatable)`)
		fs.BoolVar(&lf.open, "open", false, "only starts whose window is open")
		if cmd == "list" {
			fs.StringVar(&lf.start, "start", "", "events at or after this time (RFC 3339 or Unix seconds)")
			fs.StringVar(&lf.end, "end", "", "events at or before this time")
			fs.IntVar(&lf.limit, "limit", 100, "at most this many events (0: all)")
		}
	case "get", "impact":
	case "gate":
		fs.StringVar(&gf.service, "service", "", "the changed service (required unless --event-id)")
		fs.StringVar(&gf.event, "event", "", "the change's event name (default: any judged name)")
		fs.StringVar(&gf.eventID, "event-id", "", "a particular change (its start, stop or point event) instead of the service's latest")
		fs.Var(&gf.match, "match", `attribute matcher the change must match, as in PromQL: stage="2" (repeatable)`)
		fs.Var(&gf.signals, "signal", "judge only this signal, now (repeatable)")
		fs.BoolVar(&gf.allowMarginal, "allow-marginal", false, "let a marginal verdict pass")
		fs.BoolVar(&gf.dryRun, "dry-run", false, "record nothing")
	default:
		fmt.Fprintf(e.stderr, "eventctl: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: eventctl %s\n\nFlags:\n", synopsis[cmd])
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if cfg.token == "" {
		cfg.token = e.getenv("LEVITATED_TOKEN")
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	want := map[string]int{"start": 1, "stop": 1, "run": 1, "get": 1, "list": 0, "tail": 0, "impact": 1, "gate": 0}[cmd]
	if len(pos) != want {
		fmt.Fprintf(e.stderr, "eventctl %s: want %d argument(s), got %d: %q\n", cmd, want, len(pos), pos)
		return exitUsage
	}
	if cmd == "run" && len(command) == 0 {
		fmt.Fprintf(e.stderr, "eventctl run: no command; use eventctl run NAME [flags] -- COMMAND [ARGS...]\n")
		return exitUsage
	}
	if cfg.output != "text" && cfg.output != "json" {
		fmt.Fprintf(e.stderr, "eventctl: -o %q: want text or json\n", cfg.output)
		return exitUsage
	}
	c, err := dial(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
		return exitUsage
	}
	defer c.Close()
	p := printer{w: e.stdout, json: cfg.output == "json"}

	switch cmd {
	case "start", "stop":
		ev, err := ef.event(pos[0], cmd)
		if err == nil {
			ev, err = c.create(ctx, ev)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
			return exitError
		}
		p.created(ev)
		if printWarnings(e.stderr, ev) && ef.failOnWarning {
			fmt.Fprintf(e.stderr, "eventctl: %s %s: stored with warnings; exit 1 (--strict)\n", cmd, pos[0])
			return exitError
		}
		return exitOK
	case "run":
		return runCommand(ctx, c, &ef, pos[0], command, e)
	case "get":
		var ev *levitatedv1.Event
		err := c.call(ctx, "get "+pos[0], func(ctx context.Context) error {
			resp, err := c.api.GetEvent(ctx, &levitatedv1.GetEventRequest{Id: pos[0]})
			ev = resp.GetEvent()
			return err
		})
		if err != nil {
			fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
			return exitError
		}
		p.event(ev)
		return exitOK
	case "list":
		req := &levitatedv1.ListEventsRequest{Start: lf.start, End: lf.end, Name: lf.name, Match: lf.match, OpenOnly: lf.open}
		n := 0
		// -o json prints one document, {"events":[…]} as the REST API's
		// list answers (every page joined); text prints a line per event.
		var all []*levitatedv1.Event
		for {
			req.Limit = int32(events.MaxLimit)
			if lf.limit > 0 {
				req.Limit = int32(min(lf.limit-n, events.MaxLimit))
			}
			var resp *levitatedv1.ListEventsResponse
			err := c.call(ctx, "list", func(ctx context.Context) error {
				var err error
				resp, err = c.api.ListEvents(ctx, req)
				return err
			})
			if err != nil {
				fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
				return exitError
			}
			for _, ev := range resp.GetEvents() {
				if p.json {
					all = append(all, ev)
				} else {
					p.event(ev)
				}
				n++
			}
			if resp.GetNextPageToken() == "" || (lf.limit > 0 && n >= lf.limit) {
				if p.json {
					p.list(all)
				}
				return exitOK
			}
			req.PageToken = resp.GetNextPageToken()
		}
	case "tail":
		return tail(ctx, c, &levitatedv1.TailEventsRequest{Name: lf.name, Match: lf.match, OpenOnly: lf.open}, e, p)
	case "impact":
		return impact(ctx, cfg, pos[0], e, p)
	case "gate":
		if gf.service == "" && gf.eventID == "" {
			fmt.Fprintf(e.stderr, "eventctl gate: --service is required (or --event-id)\n")
			return exitUsage
		}
		return gate(ctx, cfg, gf, e, p)
	}
	return exitUsage
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// runCommand stores a start, runs command, stores the stop with the exit
// code and duration, and returns the command's exit status.
func runCommand(ctx context.Context, c *client, ef *eventFlags, name string, command []string, e env) int {
	key := newKey()
	start, err := ef.event(name, "start")
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
		return exitUsage
	}
	start.IdempotencyKey = key + "/start"
	started, err := c.create(ctx, start)
	if err == nil {
		printWarnings(e.stderr, started)
	}
	if err != nil {
		if ef.strict {
			fmt.Fprintf(e.stderr, "eventctl: %v; not running %s (--require-server)\n", err, command[0])
			return exitError
		}
		fmt.Fprintf(e.stderr, "eventctl: warning: %v; running %s anyway\n", err, command[0])
	}

	begin := time.Now()
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	status := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			status = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				status = 128 + int(ws.Signal()) // as a shell reports it
			}
		case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
			status = 127
		default:
			fmt.Fprintf(e.stderr, "eventctl: run %s: %v\n", command[0], err)
			status = 126
		}
	}
	dur := time.Since(begin)

	stop, err := ef.event(name, "stop")
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: %v\n", err)
		return status
	}
	if stop.Attributes == nil {
		stop.Attributes = map[string]string{}
	}
	stop.Attributes["exit_code"] = strconv.Itoa(status)
	stop.Attributes["duration_seconds"] = strconv.FormatFloat(dur.Seconds(), 'f', 3, 64)
	stop.IdempotencyKey = key + "/stop"
	stop.Timestamp = nil
	if started != nil {
		stop.StartId = started.GetId()
	}
	// The stop is stored even if ctx was cancelled by a signal: the
	// command ended and the window must close.
	stopCtx := context.WithoutCancel(ctx)
	stopped, err := c.create(stopCtx, stop)
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: warning: %v\n", err)
	} else {
		printWarnings(e.stderr, stopped)
	}
	return status
}

func tail(ctx context.Context, c *client, req *levitatedv1.TailEventsRequest, e env, p printer) int {
	backoff := c.backoff
	for attempt := 0; ; attempt++ {
		stream, err := c.api.TailEvents(c.outgoing(ctx), req)
		if err == nil {
			_, err = stream.Header()
		}
		if err == nil {
			attempt = 0
			backoff = c.backoff
			for {
				var resp *levitatedv1.TailEventsResponse
				resp, err = stream.Recv()
				if err != nil {
					break
				}
				p.event(resp.GetEvent())
			}
		}
		if ctx.Err() != nil {
			return exitOK
		}
		if errors.Is(err, io.EOF) {
			return exitOK
		}
		if !retryable(err) || attempt >= c.retries {
			fmt.Fprintf(e.stderr, "eventctl: %v\n", c.explain("tail", err))
			return exitError
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return exitOK
		}
	}
}

// printWarnings prints the server's warnings about a stored event on w and
// reports whether there were any.
func printWarnings(w io.Writer, ev *levitatedv1.Event) bool {
	for _, msg := range ev.GetWarnings() {
		fmt.Fprintf(w, "eventctl: warning: %s\n", msg)
	}
	return len(ev.GetWarnings()) > 0
}

// printer writes events as text or JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) created(ev *levitatedv1.Event) {
	if p.json {
		p.event(ev)
		return
	}
	fmt.Fprintln(p.w, ev.GetId())
}

// list prints events as one JSON document, {"events":[…]}.
func (p printer) list(evs []*levitatedv1.Event) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: false}.Marshal(&levitatedv1.ListEventsResponse{Events: evs})
	if err != nil {
		fmt.Fprintf(p.w, "{\"error\":%q}\n", err.Error())
		return
	}
	if len(evs) == 0 {
		b = []byte(`{"events":[]}`)
	}
	fmt.Fprintln(p.w, string(b))
}

func (p printer) event(ev *levitatedv1.Event) {
	if p.json {
		b, err := protojson.Marshal(ev)
		if err != nil {
			fmt.Fprintf(p.w, "{\"error\":%q}\n", err.Error())
			return
		}
		fmt.Fprintln(p.w, string(b))
		return
	}
	keys := make([]string, 0, len(ev.GetAttributes()))
	for k := range ev.GetAttributes() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var attrs []string
	for _, k := range keys {
		attrs = append(attrs, k+"="+strconv.Quote(ev.GetAttributes()[k]))
	}
	window := ""
	if w := ev.GetWindow(); w != nil {
		switch {
		case w.GetOpen():
			window = "open"
		case ev.GetState() == "start":
			window = "until " + w.GetEnd().AsTime().Format(time.RFC3339Nano)
		default:
			window = "from " + w.GetStart().AsTime().Format(time.RFC3339Nano)
		}
	}
	fmt.Fprintf(p.w, "%s  %s  %-5s  %s  {%s}  %s\n", ev.GetId(), ev.GetTimestamp().AsTime().Format(time.RFC3339Nano),
		ev.GetState(), ev.GetName(), strings.Join(attrs, ", "), window)
}
