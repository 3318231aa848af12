package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/levitated/levitated/pkg/demo"
)

// demoCommand is how the report names the command that made it: go run
// builds into a go-build directory.
func demoCommand(url string) string {
	cmd := "levitated demo"
	if strings.Contains(os.Args[0], "go-build") {
		cmd = "go run ./cmd/levitated demo"
	}
	if url != "" {
		cmd += " --url " + url
	}
	return cmd
}

// runDemo is `levitated demo`: it plays the canary demo (pkg/demo) and
// writes its report.
func runDemo(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("levitated demo", flag.ContinueOnError)
	fs.SetOutput(stdout)
	report := fs.String("report", "levitated-demo.html", "`file` to write the HTML report to")
	scenario := fs.String("scenario", "all", "which run: healthy, regression or all")
	listen := fs.String("listen-address", "127.0.0.1:0", "`address` of each run's levitated")
	dataDir := fs.String("data-dir", "", "keep each run's store in this `directory` (default: a temporary one, removed)")
	seed := fs.Uint64("seed", 1, "seed of the simulated traffic")
	pause := fs.Bool("pause", false, "after each stage, wait for Enter (levitated stays up: point Grafana or curl at it)")
	logLevel := fs.String("log.level", "warn", "levitated's log `level`")
	url := fs.String("url", "", "play the runs into the levitated at this `URL` (e.g. http://127.0.0.1:9090) instead of starting one per run, so its Grafana dashboard and console show them")
	token := fs.String("token", os.Getenv("LEVITATED_TOKEN"), "bearer token for --url (scopes write, events:write, analysis, read; default $LEVITATED_TOKEN)")
	controller := fs.String("controller", demo.ControllerArgoRollouts, "the rollout controller whose pods the service has: argo-rollouts (pods checkout-<hash>-<id>, label rollouts_pod_template_hash; judged with deploy/argo-rollouts' stage judge) or flagger (primary pods checkout-primary-<hash>-<id>, canary pods checkout-<hash>-<id>, label pod_template_hash; judged with deploy/flagger's Canary webhook request)")
	fs.Usage = func() {
		fmt.Fprint(stdout, "Usage: levitated demo [flags]\n\n"+
			"Plays a canary rollout of a service in stages of 20, 40, 60 and 80 % on this\n"+
			"machine: levitated on a temporary directory, RED metrics of stable, baseline and\n"+
			"canary pods through remote write (simulated time), a change event per stage,\n"+
			"and levitated's canary judge after each stage. One run has a healthy canary,\n"+
			"one a canary that regresses at 40 %. Prints a table per run and writes an\n"+
			"HTML report with the charts and the stage windows.\n\n"+
			"With --url, the same traffic, stage events and judgements go to a running\n"+
			"levitated instead, the runs one after the other ending now.\n\n"+
			"The pods are named and labelled as Argo Rollouts names a Rollout's; with\n"+
			"--controller flagger, as Flagger names a Canary's primary and canary\n"+
			"Deployments, so that deploy/flagger's MetricTemplate tells them apart.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "levitated demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "levitated demo: --log.level: %v\n", err)
		return 2
	}
	if *url != "" && !strings.HasPrefix(*url, "http://") && !strings.HasPrefix(*url, "https://") {
		fmt.Fprintf(stderr, "levitated demo: --url: want http:// or https://, got %q\n", *url)
		return 2
	}
	if !slices.Contains(demo.Controllers, *controller) {
		fmt.Fprintf(stderr, "levitated demo: --controller: want %s, got %q\n", strings.Join(demo.Controllers, " or "), *controller)
		return 2
	}
	opts := demo.Options{
		Controller:    *controller,
		URL:           *url,
		Token:         *token,
		Command:       demoCommand(*url),
		ListenAddress: *listen,
		DataDir:       *dataDir,
		Report:        *report,
		Seed:          *seed,
		Out:           stdout,
		Logger:        slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	switch *scenario {
	case "all":
	default:
		for _, s := range demo.Scenarios {
			if s.Name == *scenario {
				opts.Scenarios = []demo.Scenario{s}
			}
		}
		if opts.Scenarios == nil {
			fmt.Fprintf(stderr, "levitated demo: --scenario: want healthy, regression or all, got %q\n", *scenario)
			return 2
		}
	}
	if *pause {
		in := bufio.NewScanner(stdin)
		opts.AfterStage = func(ctx context.Context, url string, run demo.Scenario, s demo.Stage) error {
			// One line a program can read (compat/demo_test.go does).
			fmt.Fprintf(stdout, "paused run=%s weight=%d verdict=%s start=%s end=%s url=%s: press Enter to go on\n",
				run.Name, s.Weight, s.Verdict, s.Start.UTC().Format(time.RFC3339), s.End.UTC().Format(time.RFC3339), url)
			if !in.Scan() {
				return errors.New("standard input closed while paused")
			}
			return nil
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	start := time.Now()
	if _, err := demo.Run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "levitated demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "done in %s\n", time.Since(start).Round(100*time.Millisecond))
	return 0
}
