package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/levitated/levitated/pkg/kubeevents"
)

const kubeEventsUsage = `Usage: levitated kube-events [flags]

Watches the Kubernetes API and records its changes in levitated as change
events, with no CI step (pkg/kubeevents, docs/events.md): "deploy" windows of
Deployment, StatefulSet, DaemonSet and Argo Rollouts Rollout rollouts,
"canary-step" windows of each Rollout canary stage (its weight), "scale"
events of HorizontalPodAutoscalers and "config-change" events of ConfigMaps
and Secrets (their metadata only, never their contents).

In a cluster it uses its ServiceAccount (the Helm chart's kubeEvents
values); elsewhere --kubeconfig. What it has handled is kept in a ConfigMap
(--state.namespace, --state.name), so a restart or another replica sends
no event twice.

Flags (one or two dashes):
`

// runKubeEvents runs `levitated kube-events` and returns the exit code.
func runKubeEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("levitated kube-events", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() { fmt.Fprint(stdout, kubeEventsUsage); fs.PrintDefaults() }
	opts := kubeevents.DefaultOptions()
	kubeconfig := fs.String("kubeconfig", "", "`file` to reach the API server with; empty: the in-cluster ServiceAccount")
	url := fs.String("levitated.url", "http://127.0.0.1:9090", "levitated's base `URL`")
	tokenFile := fs.String("levitated.token-file", "", "`file` holding a levitated token with the events:write scope (needed when levitated requires authentication)")
	fs.StringVar(&opts.Namespace, "namespace", "", "watch only this `namespace`; empty: every namespace")
	fs.StringVar(&opts.LabelSelector, "selector", "", "watch only objects matching this label `selector` (app=checkout, tier in (web,api))")
	kinds := fs.String("kinds", "", "comma-separated `kinds` to watch (Deployment, StatefulSet, DaemonSet, Rollout, HorizontalPodAutoscaler, ConfigMap, Secret); empty: all")
	stateNS := fs.String("state.namespace", "", "`namespace` of the state ConfigMap; empty: the pod's namespace (POD_NAMESPACE, or the ServiceAccount's), else default")
	stateName := fs.String("state.name", "levitated-kube-events", "`name` of the state ConfigMap")
	fs.DurationVar(&opts.SaveInterval, "state.save-interval", opts.SaveInterval, "how often the state is saved after a change")
	fs.DurationVar(&opts.RetryInterval, "retry-interval", opts.RetryInterval, "wait before retrying a failed list, watch or event")
	logLevel := fs.String("log.level", "info", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "levitated kube-events: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: --log.level: %v\n", err)
		return 2
	}
	if *kinds != "" {
		for _, k := range strings.Split(*kinds, ",") {
			opts.Kinds = append(opts.Kinds, strings.TrimSpace(k))
		}
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger = logger

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: --kubeconfig: %v\n", err)
		return 2
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "levitated kube-events: --levitated.token-file: %v\n", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	ns := *stateNS
	if ns == "" {
		ns = podNamespace()
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: %v\n", err)
		return 1
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: %v\n", err)
		return 1
	}
	sink := &kubeevents.HTTPSink{URL: *url, Token: token, Client: &http.Client{Timeout: 30 * time.Second}}
	store := &kubeevents.ConfigMapStore{Client: dyn, Namespace: ns, Name: *stateName}
	w, err := kubeevents.New(dyn, meta, sink, store, ns+"/"+*stateName, opts)
	if err != nil {
		fmt.Fprintf(stderr, "levitated kube-events: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger.Info("kube-events: watching", "api", cfg.Host, "levitated", *url, "namespace", opts.Namespace, "selector", opts.LabelSelector, "state", ns+"/"+*stateName)
	if err := w.Run(ctx); err != nil {
		logger.Error("kube-events stopped with an error", "err", err)
		return 1
	}
	return 0
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// podNamespace is POD_NAMESPACE, else the ServiceAccount's namespace, else
// "default".
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}
