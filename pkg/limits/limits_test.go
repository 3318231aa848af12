package limits

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/levitated/levitated/pkg/tenant"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "overrides.yml")
	require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
	return f
}

func TestOverrides(t *testing.T) {
	f := writeFile(t, "overrides:\n  a:\n    ingestion_rate: 5\n    query_timeout: 30s\n")
	l, err := New(Options{Defaults: Limits{IngestionRate: 100, MaxSeries: 7}, OverridesFile: f})
	require.NoError(t, err)
	require.Equal(t, Limits{IngestionRate: 5, MaxSeries: 7, QueryTimeout: 30_000_000_000}, l.For("a"))
	require.Equal(t, Limits{IngestionRate: 100, MaxSeries: 7}, l.For("b"))
	require.Contains(t, l.setting("a", "ingestion_rate"), `ingestion_rate for tenant "a" in the limits overrides file`)
	require.Contains(t, l.setting("a", "max_series"), "--limits.max-series")

	for content, want := range map[string]string{
		"overrides:\n  a:\n    no_such_limit: 1\n": "no_such_limit",
		"overrides:\n  a:\n    max_series: -1\n":   "max_series is negative",
		"limits: {}\n":                             "limits",
	} {
		_, err := New(Options{OverridesFile: writeFile(t, content)})
		require.ErrorContains(t, err, want)
	}
	_, err = New(Options{Defaults: Limits{EventsRate: -1}})
	require.ErrorContains(t, err, "--limits.events-rate")
}

func TestOverridesReload(t *testing.T) {
	f := writeFile(t, "overrides:\n  a:\n    max_series: 1\n")
	l, err := New(Options{OverridesFile: f, ReloadInterval: time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, 1, l.For("a").MaxSeries)
	time.Sleep(10 * time.Millisecond) // a new modification time
	require.NoError(t, os.WriteFile(f, []byte("overrides:\n  a:\n    max_series: 2\n"), 0o600))
	require.Eventually(t, func() bool { return l.For("a").MaxSeries == 2 }, 5*time.Second, time.Millisecond)
	// A broken file keeps the last good overrides.
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, os.WriteFile(f, []byte("overrides: ["), 0o600))
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 2, l.For("a").MaxSeries)
}

func TestAdmitSamples(t *testing.T) {
	l, err := New(Options{Defaults: Limits{IngestionRate: 10, IngestionBurstSize: 20}})
	require.NoError(t, err)
	ctx := tenant.NewContext(context.Background(), "a")
	require.NoError(t, l.AdmitSamples(ctx, 20))
	err = l.AdmitSamples(ctx, 10)
	var le *Error
	require.True(t, errors.As(err, &le))
	require.Equal(t, http.StatusTooManyRequests, le.HTTPStatus())
	require.Equal(t, 1, le.RetryAfterSeconds())
	require.Equal(t, codes.ResourceExhausted, le.GRPCStatus().Code())
	require.Contains(t, err.Error(), `tenant "a": ingestion rate limit of 10 samples/s with a burst of 20 exceeded`)
	require.Contains(t, err.Error(), "--limits.ingestion-rate")

	// More than the burst can never pass: no Retry-After.
	err = l.AdmitSamples(tenant.NewContext(context.Background(), "b"), 21)
	require.True(t, errors.As(err, &le))
	require.Zero(t, le.RetryAfterSeconds())
	require.Contains(t, err.Error(), "send smaller requests")

	// Other tenants have their own buckets; unlimited tenants pass.
	require.NoError(t, l.AdmitSamples(tenant.NewContext(context.Background(), "c"), 20))
	u, err := New(Options{})
	require.NoError(t, err)
	require.NoError(t, u.AdmitSamples(ctx, 1<<30))
}

func TestAcquireQuery(t *testing.T) {
	l, err := New(Options{Defaults: Limits{MaxConcurrentQueries: 1}})
	require.NoError(t, err)
	ctx := tenant.NewContext(context.Background(), "a")
	release, err := l.AcquireQuery(ctx)
	require.NoError(t, err)
	// Another tenant is not held up.
	r2, err := l.AcquireQuery(tenant.NewContext(context.Background(), "b"))
	require.NoError(t, err)
	r2()
	// The tenant's next query waits until its context ends.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = l.AcquireQuery(wctx)
	var le *Error
	require.True(t, errors.As(err, &le))
	require.Contains(t, err.Error(), "concurrent queries limit of 1 queries exceeded")
	// Or gets the slot when it is released.
	got := make(chan error, 1)
	go func() {
		r, err := l.AcquireQuery(ctx)
		if err == nil {
			r()
		}
		got <- err
	}()
	release()
	require.NoError(t, <-got)
}

func TestCheckSeries(t *testing.T) {
	l, err := New(Options{Defaults: Limits{MaxSeries: 10}})
	require.NoError(t, err)
	ctx := tenant.NewContext(context.Background(), "a")
	require.NoError(t, l.CheckSeries(ctx, 9, 10))
	require.NoError(t, l.CheckSeries(ctx, 11, 11), "no series created")
	require.ErrorContains(t, l.CheckSeries(ctx, 10, 11), "series limit of 10 series exceeded")
}

func TestReserveWriteBytes(t *testing.T) {
	l, err := New(Options{MaxInflightWriteBytes: 100})
	require.NoError(t, err)
	ctx := context.Background()
	r1, err := l.ReserveWriteBytes(ctx, 60)
	require.NoError(t, err)
	r2, err := l.ReserveWriteBytes(ctx, 40)
	require.NoError(t, err)
	_, err = l.ReserveWriteBytes(ctx, 1)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusServiceUnavailable, e.HTTPStatus())
	require.Equal(t, 1, e.RetryAfterSeconds())
	require.Contains(t, e.Error(), "--limits.max-inflight-write-bytes")
	r1()
	r3, err := l.ReserveWriteBytes(ctx, 50)
	require.NoError(t, err)
	r2()
	r3()
	// Larger than the whole budget: served alone.
	r4, err := l.ReserveWriteBytes(ctx, 500)
	require.NoError(t, err)
	_, err = l.ReserveWriteBytes(ctx, 1)
	require.Error(t, err)
	r4()

	_, err = New(Options{MaxInflightWriteBytes: -1})
	require.ErrorContains(t, err, "--limits.max-inflight-write-bytes")
}
