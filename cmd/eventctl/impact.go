package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// gateFlags are the flags of gate.
type gateFlags struct {
	service, event, eventID string
	match, signals          stringsFlag
	allowMarginal, dryRun   bool
}

// judgement is what eventctl prints of a judgement (docs/impact.md).
type judgement struct {
	Change struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Service string `json:"service"`
	} `json:"change"`
	Verdict     string   `json:"verdict"`
	Score       *float64 `json:"score"`
	Failing     []string `json:"failing_signals"`
	Explanation []string `json:"explanation"`
}

// restCall sends a JSON request to the server's REST API (the impact API
// has no gRPC face yet) and returns the status and body. Connection
// failures are retried as the gRPC calls are.
func restCall(ctx context.Context, cfg config, method, path string, body []byte) (int, []byte, error) {
	base := cfg.server
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return 0, nil, fmt.Errorf("--server %q: not a URL like http://127.0.0.1:9090", cfg.server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	backoff := cfg.backoff
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, cfg.timeout)
		req, err := http.NewRequestWithContext(actx, method, u.String(), bytes.NewReader(body))
		if err != nil {
			cancel()
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if cfg.token != "" {
			req.Header.Set("Authorization", "Bearer "+cfg.token)
		}
		if cfg.org != "" {
			req.Header.Set("X-Scope-OrgID", cfg.org)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if rerr != nil {
				return 0, nil, fmt.Errorf("read the answer of %s: %w", cfg.server, rerr)
			}
			return resp.StatusCode, b, nil
		}
		cancel()
		if ctx.Err() != nil {
			return 0, nil, errors.New("interrupted")
		}
		if attempt >= cfg.retries {
			return 0, nil, fmt.Errorf("server %s is unreachable after %d attempts: %w", cfg.server, attempt+1, err)
		}
		select {
		case <-ctx.Done():
			return 0, nil, errors.New("interrupted")
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// serverMessage is the message of an error answer.
func serverMessage(code int, b []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && (e.Message != "" || e.Error != "") {
		return e.Message + e.Error
	}
	return fmt.Sprintf("%d %s", code, strings.TrimSpace(string(b)))
}

// impact prints the judgement of a change; exit 1 if there is none.
func impact(ctx context.Context, cfg config, id string, e env, p printer) int {
	code, b, err := restCall(ctx, cfg, http.MethodGet, "/api/v1/events/"+url.PathEscape(id)+"/impact", nil)
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: impact %s: %v\n", id, err)
		return exitError
	}
	if code != http.StatusOK {
		fmt.Fprintf(e.stderr, "eventctl: impact %s: %s\n", id, serverMessage(code, b))
		return exitError
	}
	if p.json {
		_, _ = p.w.Write(b)
		return exitOK
	}
	var j judgement
	if err := json.Unmarshal(b, &j); err != nil {
		fmt.Fprintf(e.stderr, "eventctl: impact %s: unreadable answer: %v\n", id, err)
		return exitError
	}
	printJudgement(p.w, j)
	return exitOK
}

func printJudgement(w io.Writer, j judgement) {
	score := "no score"
	if j.Score != nil {
		score = fmt.Sprintf("score %g", *j.Score)
	}
	fmt.Fprintf(w, "%s %s of %s: %s (%s)", j.Change.Name, j.Change.ID, j.Change.Service, j.Verdict, score)
	if len(j.Failing) > 0 {
		fmt.Fprintf(w, ", failing: %s", strings.Join(j.Failing, ", "))
	}
	fmt.Fprintln(w)
	for _, s := range j.Explanation {
		fmt.Fprintf(w, "  %s\n", s)
	}
}

// gate asks the gate and exits 0 when the change may proceed, 1 when it is
// blocked or the gate cannot answer.
func gate(ctx context.Context, cfg config, gf gateFlags, e env, p printer) int {
	body, _ := json.Marshal(map[string]any{
		"service": gf.service, "event": gf.event, "event_id": gf.eventID, "match": []string(gf.match),
		"signals": []string(gf.signals), "allow_marginal": gf.allowMarginal, "dry_run": gf.dryRun,
	})
	code, b, err := restCall(ctx, cfg, http.MethodPost, "/api/v1/gates:evaluate", body)
	if err != nil {
		fmt.Fprintf(e.stderr, "eventctl: gate: %v\n", err)
		return exitError
	}
	if code != http.StatusOK && code != http.StatusPreconditionFailed {
		fmt.Fprintf(e.stderr, "eventctl: gate: %s\n", serverMessage(code, b))
		return exitError
	}
	var res struct {
		Allowed   bool      `json:"allowed"`
		Decision  string    `json:"decision"`
		Source    string    `json:"source"`
		Judgement judgement `json:"judgement"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		fmt.Fprintf(e.stderr, "eventctl: gate: unreadable answer: %v\n", err)
		return exitError
	}
	if p.json {
		_, _ = p.w.Write(b)
	} else {
		fmt.Fprintf(p.w, "%s (%s judgement)\n", res.Decision, res.Source)
		printJudgement(p.w, res.Judgement)
	}
	if !res.Allowed {
		return exitError
	}
	return exitOK
}
