package storeapi

import (
	"context"
	"slices"
	"strings"

	promstorage "github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/api/proto/thanos/storepb"
)

// LabelNames returns the label names of the series matching the request
// in [start, end], with the external labels (minus without_replica_labels)
// when there is any series, sorted.
func (s *Store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	if req.Start > req.End {
		return nil, status.Errorf(codes.InvalidArgument, "start %d is after end %d", req.Start, req.End)
	}
	if req.Limit < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "limit %d is negative", req.Limit)
	}
	match, ms, err := s.matchers(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !match {
		return &storepb.LabelNamesResponse{}, nil
	}
	q, err := s.src.ChunkQuerier(req.Start, req.End)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()
	names, warns, err := q.LabelNames(ctx, &promstorage.LabelHints{Limit: int(req.Limit)}, ms...)
	if err != nil {
		return nil, queryError("label names", ctx, err)
	}
	out := make([]string, 0, len(names)+len(s.ext))
	for _, n := range names {
		if !slices.Contains(req.WithoutReplicaLabels, n) {
			out = append(out, strings.Clone(n))
		}
	}
	if len(names) > 0 {
		for _, l := range s.ext {
			if !slices.Contains(req.WithoutReplicaLabels, l.Name) && !slices.Contains(out, l.Name) {
				out = append(out, l.Name)
			}
		}
		slices.Sort(out)
	}
	if req.Limit > 0 && int64(len(out)) > req.Limit {
		out = out[:req.Limit]
	}
	resp := &storepb.LabelNamesResponse{Names: out}
	for _, w := range warns {
		resp.Warnings = append(resp.Warnings, w.Error())
	}
	return resp, nil
}

// LabelValues returns the values of one label among the series matching
// the request in [start, end]; for an external label, its value when any
// series matches.
func (s *Store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	if req.Label == "" {
		return nil, status.Error(codes.InvalidArgument, "label name parameter cannot be empty")
	}
	if req.Start > req.End {
		return nil, status.Errorf(codes.InvalidArgument, "start %d is after end %d", req.Start, req.End)
	}
	if req.Limit < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "limit %d is negative", req.Limit)
	}
	if slices.Contains(req.WithoutReplicaLabels, req.Label) {
		return &storepb.LabelValuesResponse{}, nil
	}
	match, ms, err := s.matchers(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !match {
		return &storepb.LabelValuesResponse{}, nil
	}
	q, err := s.src.ChunkQuerier(req.Start, req.End)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()
	if v, ok := s.extValue(req.Label); ok {
		// The external label's value, if any series is here at all.
		hints := &promstorage.LabelHints{Limit: 1}
		names, _, err := q.LabelNames(ctx, hints, ms...)
		if err != nil {
			return nil, queryError("label values", ctx, err)
		}
		if len(names) == 0 {
			return &storepb.LabelValuesResponse{}, nil
		}
		return &storepb.LabelValuesResponse{Values: []string{v}}, nil
	}
	values, warns, err := q.LabelValues(ctx, req.Label, &promstorage.LabelHints{Limit: int(req.Limit)}, ms...)
	if err != nil {
		return nil, queryError("label values", ctx, err)
	}
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.Clone(v)
	}
	if req.Limit > 0 && int64(len(out)) > req.Limit {
		out = out[:req.Limit]
	}
	resp := &storepb.LabelValuesResponse{Values: out}
	for _, w := range warns {
		resp.Warnings = append(resp.Warnings, w.Error())
	}
	return resp, nil
}

// queryError is the status of a failed read: the context's when it ended,
// Internal otherwise.
func queryError(what string, ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}
