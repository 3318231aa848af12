package kayenta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/tenant"
)

// adHoc is Kayenta's application and config id of executions started
// with POST /canary.
const adHoc = "ad-hoc"

// Register mounts Kayenta's REST API on mux, at Kayenta's paths:
//
//	GET    /canaryConfig[?application=…]   config summaries
//	POST   /canaryConfig                   store a config → {"canaryConfigId"}
//	GET    /canaryConfig/{id}              a config
//	PUT    /canaryConfig/{id}              replace a config → {"canaryConfigId"}
//	DELETE /canaryConfig/{id}              delete a config (204)
//	POST   /canary/{canaryConfigId}        start an execution → {"canaryExecutionId"}
//	POST   /canary                         start one with an ad hoc config
//	GET    /canary/{canaryExecutionId}     status and result
//	GET    /canary/executions              an application's executions, newest first
//	GET    /metricSetPairList/{id}         the series an execution judged
//	GET    /judges                         the judge
//	GET    /credentials                    the account
//
// Query parameters and bodies are Kayenta's (kayenta-web controllers).
func (s *Service) Register(mux *http.ServeMux) {
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request, tid uint32) error) {
		mux.Handle(pattern, s.handler(f))
	}
	h("GET /canaryConfig", s.listConfigsHandler)
	h("POST /canaryConfig", s.createConfig)
	h("GET /canaryConfig/{id}", s.getConfigHandler)
	h("PUT /canaryConfig/{id}", s.updateConfig)
	h("DELETE /canaryConfig/{id}", s.deleteConfigHandler)
	h("POST /canary/{canaryConfigId}", s.startWithConfigID)
	h("POST /canary", s.startAdHoc)
	h("GET /canary/executions", s.listExecutions)
	h("GET /canary/{canaryExecutionId}", s.getStatus)
	h("GET /metricSetPairList/{id}", s.getPairList)
	h("GET /judges", func(w http.ResponseWriter, r *http.Request, _ uint32) error {
		writeJSON(w, http.StatusOK, []judge{{Name: analysis.JudgeName, Visible: true}})
		return nil
	})
	h("GET /credentials", func(w http.ResponseWriter, r *http.Request, _ uint32) error {
		writeJSON(w, http.StatusOK, []Credentials{{
			Name:                 s.opts.AccountName,
			Type:                 ServiceType,
			SupportedTypes:       []string{typeMetricsStore, typeObjectStore, typeConfigurationStore},
			Locations:            []string{},
			RecommendedLocations: []string{},
		}})
		return nil
	})
}

// handler resolves the tenant of the request and answers errors.
func (s *Service) handler(f func(w http.ResponseWriter, r *http.Request, tid uint32) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tid, err := tenant.ID(r.Context(), s.tenants)
		if err == nil {
			err = f(w, r, tid)
		}
		if err != nil {
			writeError(w, err)
		}
	})
}

func (s *Service) readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, badRequest("", "read the request body: %v", err)
	}
	if int64(len(b)) > s.opts.MaxBodyBytes {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes", s.opts.MaxBodyBytes)}
	}
	return b, nil
}

func (s *Service) now() time.Time { return s.opts.Now() }

// applications reads the application parameter as Spring binds a
// List<String>: repeated, or comma-separated.
func applications(r *http.Request) []string {
	var out []string
	for _, v := range r.URL.Query()["application"] {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

func (s *Service) listConfigsHandler(w http.ResponseWriter, r *http.Request, tid uint32) error {
	cfgs, err := s.listConfigs(r.Context(), tid)
	if err != nil {
		return err
	}
	apps := applications(r)
	out := []configSummary{}
	for _, c := range cfgs {
		if len(apps) > 0 && !appsOverlap(apps, c.Applications) {
			continue
		}
		var updated int64
		if c.UpdatedTimestamp != nil {
			updated = *c.UpdatedTimestamp
		}
		out = append(out, configSummary{ID: c.ID, Name: c.Name, UpdatedTimestamp: updated, UpdatedTimestampIso: c.UpdatedTimestampIso, Applications: c.Applications})
	}
	slices.SortFunc(out, func(a, b configSummary) int { return strings.Compare(a.Name+"\x00"+a.ID, b.Name+"\x00"+b.ID) })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) getConfigHandler(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("id")
	cfg, err := s.getConfig(tid, id)
	if errors.Is(err, errNotFound) {
		return notFound("canaryConfigId", "No canary config with id '%s'.", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cfg)
	return nil
}

func (s *Service) decodeConfig(r *http.Request) (analysis.CanaryConfig, error) {
	var cfg analysis.CanaryConfig
	body, err := s.readBody(r)
	if err != nil {
		return cfg, err
	}
	err = decodeJSON(body, &cfg, "canaryConfig")
	return cfg, err
}

// checkNameFree is the storage services' duplicate check: no other config
// of an overlapping application may have the same name.
func (s *Service) checkNameFree(ctx context.Context, tid uint32, cfg *analysis.CanaryConfig) error {
	all, err := s.listConfigs(ctx, tid)
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.ID != cfg.ID && other.Name == cfg.Name && appsOverlap(other.Applications, cfg.Applications) {
			return badRequest("name", "Canary config with name '%s' already exists in the scope of applications [%s].", cfg.Name, strings.Join(cfg.Applications, ", "))
		}
	}
	return nil
}

func (s *Service) createConfig(w http.ResponseWriter, r *http.Request, tid uint32) error {
	cfg, err := s.decodeConfig(r)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	if cfg.CreatedTimestamp == nil {
		cfg.CreatedTimestamp = &now
	}
	if cfg.UpdatedTimestamp == nil {
		cfg.UpdatedTimestamp = cfg.CreatedTimestamp
	}
	cfg.CreatedTimestampIso = javaInstant(time.UnixMilli(*cfg.CreatedTimestamp))
	cfg.UpdatedTimestampIso = javaInstant(time.UnixMilli(*cfg.UpdatedTimestamp))
	if cfg.ID == "" {
		cfg.ID = uuid.NewString()
	}
	if err := validateStored(&cfg); err != nil {
		return err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	if _, err := s.getConfig(tid, cfg.ID); err == nil {
		return badRequest("id", "Canary config '%s' already exists.", cfg.ID)
	} else if !errors.Is(err, errNotFound) {
		return err
	}
	if err := s.checkNameFree(r.Context(), tid, &cfg); err != nil {
		return err
	}
	if err := s.putConfig(tid, cfg); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configUpdateResponse{CanaryConfigID: cfg.ID})
	return nil
}

func (s *Service) updateConfig(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("id")
	cfg, err := s.decodeConfig(r)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	cfg.UpdatedTimestamp = &now
	cfg.UpdatedTimestampIso = javaInstant(time.UnixMilli(now))
	if err := validateStored(&cfg); err != nil {
		return err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	old, err := s.getConfig(tid, id)
	if errors.Is(err, errNotFound) {
		return notFound("canaryConfigId", "Canary config '%s' does not exist.", id)
	}
	if err != nil {
		return err
	}
	if cfg.ID == "" {
		cfg.ID = id
	}
	if cfg.ID != id {
		return badRequest("id", "'%s' differs from the id in the path, '%s'", cfg.ID, id)
	}
	if cfg.CreatedTimestamp == nil {
		cfg.CreatedTimestamp, cfg.CreatedTimestampIso = old.CreatedTimestamp, old.CreatedTimestampIso
	}
	if err := s.checkNameFree(r.Context(), tid, &cfg); err != nil {
		return err
	}
	if err := s.putConfig(tid, cfg); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configUpdateResponse{CanaryConfigID: id})
	return nil
}

func (s *Service) deleteConfigHandler(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("id")
	s.configMu.Lock()
	defer s.configMu.Unlock()
	if _, err := s.getConfig(tid, id); errors.Is(err, errNotFound) {
		return notFound("canaryConfigId", "Canary config '%s' does not exist.", id)
	} else if err != nil {
		return err
	}
	if err := s.deleteConfig(tid, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// accountName is what an execution records for an account parameter.
func (s *Service) accountName(v string) string {
	if v == "" {
		return s.opts.AccountName
	}
	return v
}

func (s *Service) startWithConfigID(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("canaryConfigId")
	cfg, err := s.getConfig(tid, id)
	if errors.Is(err, errNotFound) {
		return notFound("canaryConfigId", "No canary config with id '%s'.", id)
	}
	if err != nil {
		return err
	}
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req wireExecutionRequest
	if err := decodeJSON(body, &req, "executionRequest"); err != nil {
		return err
	}
	q := r.URL.Query()
	app := q.Get("application")
	if app == "" {
		app = "kayenta-" + s.opts.InstanceID
	}
	return s.start(w, r, tid, &execution{
		Application:               app,
		ParentPipelineExecutionID: q.Get("parentPipelineExecutionId"),
		CanaryConfigID:            id,
		ConfigurationAccountName:  s.accountName(q.Get("configurationAccountName")),
		MetricsAccountName:        s.accountName(q.Get("metricsAccountName")),
		StorageAccountName:        s.accountName(q.Get("storageAccountName")),
		Config:                    cfg,
	}, &req, "")
}

func (s *Service) startAdHoc(w http.ResponseWriter, r *http.Request, tid uint32) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	var req adhocRequest
	if err := decodeJSON(body, &req, "body"); err != nil {
		return err
	}
	if req.CanaryConfig == nil {
		return badRequest("canaryConfig", "canaryConfig must be provided for ad-hoc requests")
	}
	if req.ExecutionRequest == nil {
		return badRequest("executionRequest", "executionRequest must be provided for ad-hoc requests")
	}
	q := r.URL.Query()
	app := q.Get("application")
	if app == "" {
		app = adHoc
	}
	return s.start(w, r, tid, &execution{
		Application:               app,
		ParentPipelineExecutionID: q.Get("parentPipelineExecutionId"),
		CanaryConfigID:            adHoc,
		MetricsAccountName:        s.accountName(q.Get("metricsAccountName")),
		StorageAccountName:        s.accountName(q.Get("storageAccountName")),
		Config:                    *req.CanaryConfig,
	}, req.ExecutionRequest, "canaryConfig")
}

// start validates an execution, stores it and queues it. configField is
// the path of the config in the request ("" for a stored config).
func (s *Service) start(w http.ResponseWriter, r *http.Request, tid uint32, e *execution, req *wireExecutionRequest, configField string) error {
	if strings.ContainsRune(e.Application, 0) {
		return badRequest("application", "contains a NUL byte")
	}
	if err := validateForExecution(&e.Config); err != nil {
		return withPrefix(configField, err)
	}
	reqField := ""
	if configField != "" {
		reqField = "executionRequest"
	}
	er, err := req.validate(&e.Config)
	if err != nil {
		return withPrefix(reqField, err)
	}
	e.Request = er
	// Build and parse every query now, so that a template or PromQL
	// mistake is a 400 rather than a failed execution.
	for i, m := range e.Config.Metrics {
		q, _ := parseQuery(m.Query, e.Config.Templates)
		p := e.Request.Scopes[m.ScopeName]
		for _, sc := range []scope{p.ControlScope, p.ExperimentScope} {
			expr, err := buildQuery(&e.Config, q, sc.analysis(), s.opts.ScopeLabel)
			if err != nil {
				return withPrefix(configField, withPrefix(fmt.Sprintf("metrics[%d]", i), err))
			}
			if err := s.queries.Check(r.Context(), expr, time.Time(sc.Start), time.Time(sc.End), time.Duration(sc.Step)*time.Second); err != nil {
				f := fmt.Sprintf("metrics[%d].query", i)
				if configField != "" {
					f = configField + "." + f
				}
				return badRequest(f, "PromQL %q is not a valid range query: %s", expr, parserErrorMessage(err))
			}
		}
	}
	e.ID = s.newID()
	e.Tenant = tenant.FromContext(r.Context())
	e.Status = statusNotStarted
	e.BuildTime = s.now().UnixMilli()
	if err := s.createExecution(tid, e); err != nil {
		return err
	}
	s.queue.push(job{tid: tid, id: e.ID})
	s.metrics.queued.Set(float64(s.queue.len()))
	writeJSON(w, http.StatusOK, executionResponse{CanaryExecutionID: e.ID})
	return nil
}

func (s *Service) getStatus(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("canaryExecutionId")
	e, err := s.getExecution(tid, id)
	if errors.Is(err, errNotFound) {
		return notFound("canaryExecutionId", "No canary execution with id '%s'.", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e.status())
	return nil
}

func (s *Service) getPairList(w http.ResponseWriter, r *http.Request, tid uint32) error {
	id := r.PathValue("id")
	b, err := s.getPairs(tid, id)
	if errors.Is(err, errNotFound) {
		return notFound("metricSetPairListId", "No metric set pair list with id '%s'.", id)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	return nil
}

// orcaStatuses are Orca's ExecutionStatus names, for the statuses filter.
var orcaStatuses = []string{"NOT_STARTED", "RUNNING", "PAUSED", "SUSPENDED", "SUCCEEDED", "FAILED_CONTINUE",
	"TERMINAL", "CANCELED", "REDIRECT", "STOPPED", "BUFFERED", "SKIPPED"}

func (s *Service) listExecutions(w http.ResponseWriter, r *http.Request, tid uint32) error {
	q := r.URL.Query()
	intParam := func(name string, def int) (int, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, badRequest(name, "%q is not a positive integer", v)
		}
		return n, nil
	}
	limit, err := intParam("limit", 20)
	if err != nil {
		return err
	}
	page, err := intParam("page", 1)
	if err != nil {
		return err
	}
	if limit > 1000 {
		return badRequest("limit", "%d is more than 1000", limit)
	}
	statuses := map[string]bool{}
	for _, st := range strings.Split(q.Get("statuses"), ",") {
		if st = strings.ToUpper(strings.TrimSpace(st)); st == "" {
			continue
		}
		if !slices.Contains(orcaStatuses, st) {
			return badRequest("statuses", "%q is not an execution status (%s)", st, strings.Join(orcaStatuses, ", "))
		}
		statuses[st] = true
	}
	app := q.Get("application")
	if app == "" {
		app = adHoc
	}
	kept := map[string]execution{}
	ids, err := s.listExecutionIDs(r.Context(), tid, app, (page-1)*limit, limit, func(id string) (bool, error) {
		e, err := s.getExecution(tid, id)
		if errors.Is(err, errNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if len(statuses) > 0 && !statuses[e.Status] {
			return false, nil
		}
		kept[id] = e
		return true, nil
	})
	if err != nil {
		return err
	}
	out := make([]StatusResponse, 0, len(ids))
	for _, id := range ids {
		e := kept[id]
		out = append(out, e.status())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
