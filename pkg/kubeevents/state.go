package kubeevents

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// State is what the watcher keeps across restarts: per object
// ("Kind/namespace/name") the resourceVersion it last handled and what it
// derived from it, and per kind the resourceVersion of its last list or
// watch event. A kind absent from Kinds has never been listed: its first
// list is recorded without events.
type State struct {
	Kinds   map[string]string      `json:"kinds"`
	Objects map[string]ObjectState `json:"objects"`
}

func newState() *State {
	return &State{Kinds: map[string]string{}, Objects: map[string]ObjectState{}}
}

// StateStore loads and saves the State.
type StateStore interface {
	// Load returns the saved State, or a new empty one if none was saved.
	Load(ctx context.Context) (*State, error)
	Save(ctx context.Context, s *State) error
}

// stateKey is the ConfigMap data key holding the State as JSON.
const stateKey = "state.json"

// maxStateBytes keeps the ConfigMap under the API server's 1 MiB object
// limit, with room for its metadata.
const maxStateBytes = 900 << 10

// ConfigMapStore keeps the State in a ConfigMap of the API server, so that
// a restarted watcher, or another replica, continues where the last one
// stopped. It needs get, create and patch on that one ConfigMap.
type ConfigMapStore struct {
	Client          dynamic.Interface
	Namespace, Name string
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// Load reads the ConfigMap; a missing one is an empty State.
func (c *ConfigMapStore) Load(ctx context.Context) (*State, error) {
	cm, err := c.Client.Resource(configMaps).Namespace(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubeevents: read state configmap %s/%s: %w", c.Namespace, c.Name, err)
	}
	raw, _, _ := unstructured.NestedString(cm.Object, "data", stateKey)
	s := newState()
	if raw == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(raw), s); err != nil {
		return nil, fmt.Errorf("kubeevents: state configmap %s/%s, key %s: %w", c.Namespace, c.Name, stateKey, err)
	}
	if s.Kinds == nil {
		s.Kinds = map[string]string{}
	}
	if s.Objects == nil {
		s.Objects = map[string]ObjectState{}
	}
	return s, nil
}

// Save applies the ConfigMap server-side.
func (c *ConfigMapStore) Save(ctx context.Context, s *State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if len(b) > maxStateBytes {
		return fmt.Errorf("kubeevents: state of %d objects is %d bytes, over the %d a ConfigMap can hold; narrow --namespace, --selector or --kinds of levitated kube-events", len(s.Objects), len(b), maxStateBytes)
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": c.Name, "namespace": c.Namespace,
			"labels": map[string]any{"app.kubernetes.io/managed-by": "levitated-kube-events"}},
		"data": map[string]any{stateKey: string(b)},
	}}
	_, err = c.Client.Resource(configMaps).Namespace(c.Namespace).Apply(ctx, c.Name, cm, metav1.ApplyOptions{FieldManager: "levitated-kube-events", Force: true})
	if err != nil {
		return fmt.Errorf("kubeevents: save state configmap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return nil
}
