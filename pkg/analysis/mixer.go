package analysis

import (
	"crypto/sha1"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// This file ports kayenta-core metrics/MetricSetMixerService.java, which
// pairs the control's and the experiment's series of a metric by tag set.

// MetricSet is one series of one metric over one scope, as a metrics query
// returns it (kayenta-core metrics/MetricSet.java).
type MetricSet struct {
	Name            string            `json:"name"`
	Tags            map[string]string `json:"tags"`
	StartTimeMillis int64             `json:"startTimeMillis"`
	StartTimeIso    string            `json:"startTimeIso"`
	EndTimeMillis   int64             `json:"endTimeMillis"`
	EndTimeIso      string            `json:"endTimeIso"`
	StepMillis      int64             `json:"stepMillis"`
	Values          Series            `json:"values"`
	Attributes      map[string]string `json:"attributes,omitempty"`
}

// ExpectedDataPoints is (end - start) / step, 0 without a step.
func (m MetricSet) ExpectedDataPoints() int64 {
	if m.StepMillis == 0 {
		return 0
	}
	return (m.EndTimeMillis - m.StartTimeMillis) / m.StepMillis
}

// MixOptions are levitated's fixes to Kayenta's pairing. The zero value
// pairs exactly as Kayenta does.
type MixOptions struct {
	// IgnoreTags are dropped from every tag set before pairing: the labels
	// that tell the canary's series from the baseline's (a pod or
	// deployment name). Kayenta pairs by the full tag set, so such a label
	// leaves every pair half NaN (spinnaker/spinnaker#6286).
	IgnoreTags []string
	// RejectUnpaired makes a tag set found on only one side an error, where
	// Kayenta pairs it with an all-NaN placeholder, and makes it an error to
	// discard tagged series because the other side of the metric also has an
	// untagged one. With either option, two series with the same tags on one
	// side are an error; Kayenta keeps the first.
	RejectUnpaired bool
}

// Mix is MetricSetMixerService.mixAll: for every metric config, in order,
// the control and experiment metric sets of that name, paired by tags.
func Mix(metrics []CanaryMetricConfig, control, experiment []MetricSet, opts MixOptions) ([]MetricSetPair, error) {
	var out []MetricSetPair
	for _, m := range metrics {
		var c, e []MetricSet
		for _, ms := range control {
			if ms.Name == m.Name {
				c = append(c, ms)
			}
		}
		for _, ms := range experiment {
			if ms.Name == m.Name {
				e = append(e, ms)
			}
		}
		pairs, err := mixMetric(m.Name, c, e, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, pairs...)
	}
	return out, nil
}

// mixMetric is the body of mixAll's loop and mixOneMetric.
func mixMetric(name string, control, experiment []MetricSet, opts MixOptions) ([]MetricSetPair, error) {
	if len(control) == 0 {
		return nil, fmt.Errorf("no control metrics found for %s and the metric service did not create a placeholder", name)
	}
	if len(experiment) == 0 {
		return nil, fmt.Errorf("no experiment metrics found for %s and the metric service did not create a placeholder", name)
	}
	if len(opts.IgnoreTags) > 0 {
		control, experiment = dropTags(control, opts.IgnoreTags), dropTags(experiment, opts.IgnoreTags)
	}

	if len(opts.IgnoreTags) > 0 || opts.RejectUnpaired {
		for side, sets := range map[string][]MetricSet{"control": control, "experiment": experiment} {
			for i := range sets {
				for _, other := range sets[:i] {
					if maps.Equal(sets[i].Tags, other.Tags) {
						return nil, fmt.Errorf("metric %s: the %s has more than one series with tags %s; aggregate them in the query", name, side, formatTags(sets[i].Tags))
					}
				}
			}
		}
	}

	controlKeys, experimentKeys := tagKeys(control), tagKeys(experiment)
	if len(controlKeys) > 0 && len(experimentKeys) > 0 && !slices.Equal(controlKeys, experimentKeys) {
		return nil, fmt.Errorf("control metrics have different tag keys than the experiment tag set (%v != %v)", controlKeys, experimentKeys)
	}

	controlHasEmpty := slices.ContainsFunc(control, func(ms MetricSet) bool { return len(ms.Tags) == 0 })
	experimentHasEmpty := slices.ContainsFunc(experiment, func(ms MetricSet) bool { return len(ms.Tags) == 0 })
	controlTemplate, experimentTemplate := control[0], experiment[0]

	var out []MetricSetPair
	add := func(c, e MetricSet) error {
		p, err := mixOne(c, e)
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	}

	switch {
	// One side has an untagged placeholder and the other does not: the
	// placeholder's times make an all-NaN partner for every series of the
	// other side, and that side's own series are ignored.
	case controlHasEmpty && !experimentHasEmpty:
		if opts.RejectUnpaired && len(control) > 1 {
			return nil, fmt.Errorf("metric %s: the control has an untagged series beside tagged ones; the tagged ones would be ignored", name)
		}
		for _, ms := range experiment {
			if err := add(makeTemplate(controlTemplate, ms.Tags), ms); err != nil {
				return nil, err
			}
		}
	case !controlHasEmpty && experimentHasEmpty:
		if opts.RejectUnpaired && len(experiment) > 1 {
			return nil, fmt.Errorf("metric %s: the experiment has an untagged series beside tagged ones; the tagged ones would be ignored", name)
		}
		for _, ms := range control {
			if err := add(ms, makeTemplate(experimentTemplate, ms.Tags)); err != nil {
				return nil, err
			}
		}
	default:
		// Tag set by tag set. Kayenta walks a HashSet; here control tag
		// sets come first, in order, then those only the experiment has.
		var all []map[string]string
		for _, ms := range slices.Concat(control, experiment) {
			if !slices.ContainsFunc(all, func(t map[string]string) bool { return maps.Equal(t, ms.Tags) }) {
				all = append(all, ms.Tags)
			}
		}
		for _, tags := range all {
			c, cok := findTags(control, tags)
			e, eok := findTags(experiment, tags)
			if opts.RejectUnpaired && (!cok || !eok) {
				side := "control"
				if !eok {
					side = "experiment"
				}
				return nil, fmt.Errorf("metric %s: the %s has no series with tags %s", name, side, formatTags(tags))
			}
			if !cok {
				c = makeTemplate(controlTemplate, tags)
			}
			if !eok {
				e = makeTemplate(experimentTemplate, tags)
			}
			if err := add(c, e); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// mixOne is MetricSetMixerService.mixOne.
func mixOne(control, experiment MetricSet) (MetricSetPair, error) {
	switch {
	case control.Name == "":
		return MetricSetPair{}, fmt.Errorf("control metric set name was not set")
	case experiment.Name == "":
		return MetricSetPair{}, fmt.Errorf("experiment metric set name was not set")
	case control.Name != experiment.Name:
		return MetricSetPair{}, fmt.Errorf("control metric set name %q does not match experiment metric set name %q", control.Name, experiment.Name)
	case !maps.Equal(control.Tags, experiment.Tags):
		return MetricSetPair{}, fmt.Errorf("control metric set tags %s do not match experiment metric set tags %s", formatTags(control.Tags), formatTags(experiment.Tags))
	}
	tags := control.Tags
	if tags == nil {
		tags = map[string]string{} // Kayenta's builder never leaves tags null
	}
	p := MetricSetPair{
		Name: control.Name,
		ID:   pairID(control.Name, control.Tags),
		Tags: tags,
		Values: map[string]Series{
			Control:    padNaN(control.Values, control.ExpectedDataPoints()),
			Experiment: padNaN(experiment.Values, experiment.ExpectedDataPoints()),
		},
		Scopes: map[string]MetricSetScope{
			Control:    {StartTimeIso: control.StartTimeIso, StartTimeMillis: control.StartTimeMillis, StepMillis: control.StepMillis},
			Experiment: {StartTimeIso: experiment.StartTimeIso, StartTimeMillis: experiment.StartTimeMillis, StepMillis: experiment.StepMillis},
		},
	}
	if control.Attributes != nil || experiment.Attributes != nil {
		p.Attributes = map[string]map[string]string{}
		if control.Attributes != nil {
			p.Attributes[Control] = control.Attributes
		}
		if experiment.Attributes != nil {
			p.Attributes[Experiment] = experiment.Attributes
		}
	}
	return p, nil
}

// makeTemplate is MetricSetMixerService.makeTemplate: the template's name,
// times and attributes with the given tags and all-NaN values.
func makeTemplate(template MetricSet, tags map[string]string) MetricSet {
	t := template
	t.Tags = tags
	t.Values = padNaN(nil, template.ExpectedDataPoints())
	return t
}

func padNaN(values Series, n int64) Series {
	out := slices.Clone(values)
	if out == nil {
		out = Series{}
	}
	for int64(len(out)) < n {
		out = append(out, math.NaN())
	}
	return out
}

func findTags(sets []MetricSet, tags map[string]string) (MetricSet, bool) {
	for _, ms := range sets {
		if maps.Equal(ms.Tags, tags) {
			return ms, true
		}
	}
	return MetricSet{}, false
}

func tagKeys(sets []MetricSet) []string {
	keys := map[string]struct{}{}
	for _, ms := range sets {
		for k := range ms.Tags {
			keys[k] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(keys))
}

func dropTags(sets []MetricSet, drop []string) []MetricSet {
	out := make([]MetricSet, len(sets))
	for i, ms := range sets {
		tags := maps.Clone(ms.Tags)
		for _, k := range drop {
			delete(tags, k)
		}
		ms.Tags = tags
		out[i] = ms
	}
	return out
}

// formatTags renders tags as {k=v, ...} in key order.
func formatTags(tags map[string]string) string {
	parts := make([]string, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// pairID is a name-based (version 5 layout) UUID of the metric name and
// tags. Kayenta uses a random UUID; a pair's id only has to be unique
// within its list, which name and tags are.
func pairID(name string, tags map[string]string) string {
	h := sha1.Sum([]byte(name + "\x00" + formatTags(tags)))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
