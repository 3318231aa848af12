// Package compat holds compatibility tests that run the peers' own client
// code (Prometheus' client_golang API client, Argo Rollouts' and Flagger's
// Prometheus providers, Argo Rollouts' Kayenta and Web providers, Flagger's
// webhook client, Grafana's datasource requests) against a real levitated
// server. It is a separate module so that their dependencies stay
// out of levitated's.
package compat
