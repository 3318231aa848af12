package server

import (
	"net/http"
	"net/url"

	levpromql "github.com/levitated/levitated/pkg/promql"
)

// withTemplates sits in front of /api/v1/query and /api/v1/query_range:
// a query that starts with MetricsQL's WITH (...) is expanded
// (levpromql.ExpandWithTemplates) and the expanded PromQL handed on, so the
// Prometheus engine runs it; an expansion error is Prometheus' 400
// bad_data for the query parameter, as is a query beyond the query
// limits l. Other queries pass unchanged.
func withTemplates(next http.Handler, l levpromql.QueryLimits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			// Prometheus' handler reports a bad form itself.
			next.ServeHTTP(w, r)
			return
		}
		q := r.Form.Get("query")
		if !levpromql.HasWithTemplates(q) {
			next.ServeHTTP(w, r)
			return
		}
		expanded, err := levpromql.ExpandWithTemplates(q, l)
		if err != nil {
			writeError(w, DialectPrometheus, badData(&invalidQuery{err}))
			return
		}
		form := url.Values{}
		for k, v := range r.Form {
			form[k] = v
		}
		form.Set("query", expanded)
		r2 := r.Clone(r.Context())
		r2.Form = form
		r2.PostForm = form
		next.ServeHTTP(w, r2)
	})
}

// invalidQuery words an error as Prometheus' API words a bad parameter.
type invalidQuery struct{ err error }

func (e *invalidQuery) Error() string { return `invalid parameter "query": ` + e.err.Error() }
func (e *invalidQuery) Unwrap() error { return e.err }
