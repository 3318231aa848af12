package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/tenant"
)

// TestSignInAndReadOnlyToken: a server with tokens shows the sign-in; a
// wrong token is refused on the page, the right one signs in and shows its
// tenant, and a read-only token is offered no action that writes or judges.
func TestSignInAndReadOnlyToken(t *testing.T) {
	if env.chromium == "" {
		t.Skip("no Chromium")
	}
	dir := t.TempDir()
	store := auth.NewStore(filepath.Join(dir, auth.TokenFileName))
	reader, _, err := store.Create(tenant.Default, []auth.Scope{auth.ScopeRead}, "console reader", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writer, _, err := store.Create(tenant.Default, []auth.Scope{auth.ScopeEventsWrite}, "console writer", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = dir
	o.Registry = prometheus.NewRegistry()
	srv, err := server.New(o)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	base := "http://" + srv.Addr().String()
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	var created struct{ Event struct{ ID string } }
	if err := callAuth(http.MethodPost, base+"/api/v1/events", `{"name":"deploy","state":"start","attributes":{"service":"checkout"},"text":"rolling out 1.4.2"}`, writer, &created); err != nil {
		t.Fatal(err)
	}

	ctx := browser(t, 1280, 800)
	// The query page is rendered before whoami answers (main.tsx): without
	// a token it still ends at the sign-in, with no graph.
	do(t, ctx,
		chromedp.Navigate(base+"/query?g0.expr=up&g0.tab=graph"),
		visible(`[data-testid=token]`),
		chromedp.Sleep(300*time.Millisecond),
	)
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid=graph], .chart').length`); n != 0 {
		t.Errorf("/query without a token shows the sign-in and %d graphs", n)
	}
	do(t, ctx,
		chromedp.Navigate(base+"/changes"),
		visible(`[data-testid=token]`),
		keys(`[data-testid=token]`, "lev_notavalidtoken"),
		click(`[data-testid=signin]`),
		visible(`[data-testid=signin-error]`),
	)
	refused := text(t, ctx, `[data-testid=signin-error]`)
	if !strings.Contains(refused, "401") {
		t.Errorf("a wrong token shows %q, want the 401 explained", refused)
	}
	shot(t, ctx, "signin-refused")

	do(t, ctx,
		fill(`[data-testid=token]`, reader),
		click(`[data-testid=signin]`),
		visible(`[data-testid=changes] tbody tr`),
	)
	who := text(t, ctx, `[data-testid=who]`)
	if !strings.Contains(who, tenant.Default) {
		t.Errorf("header shows %q, want tenant %q", who, tenant.Default)
	}

	// A read-only token: no judging, no writing, on any page.
	pages := []string{"/query", "/changes", "/changes/" + created.Event.ID, "/analyses", "/status"}
	for _, p := range pages {
		t.Logf("page %s", p)
		do(t, ctx,
			chromedp.Navigate(base+p),
			visible(`main .page`),
			chromedp.Sleep(800*time.Millisecond),
		)
		writes := eval[int](t, ctx, `document.querySelectorAll('form.native-form, [data-testid=na-run], [data-write]').length`)
		body := text(t, ctx, `main`)
		if writes != 0 {
			t.Errorf("%s offers %d write or judge actions to a read-only token", p, writes)
		}
		if p == "/analyses" && !strings.Contains(body, "no analysis scope") {
			t.Errorf("/analyses does not explain the missing scope: %q", body)
		}
	}
	// The token survives a reload of the tab (session storage).
	do(t, ctx, chromedp.Navigate(base+"/status"), visible(`[data-testid=who] b`))
	who = text(t, ctx, `[data-testid=who]`)
	if !strings.Contains(who, tenant.Default) {
		t.Errorf("after a reload the header shows %q", who)
	}
	shot(t, ctx, "status")
}
