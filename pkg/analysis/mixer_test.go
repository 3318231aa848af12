package analysis

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Ported from kayenta-core/src/test/groovy/com/netflix/kayenta/metrics/MetricSetMixerServiceSpec.groovy
// at kayentaCommit; case names carry the upstream feature names.

var (
	controlCpuMetricSet = MetricSet{Name: "cpu", Values: Series{1, 3, 5, 7},
		Tags: map[string]string{"tagName": "tagValue"}, Attributes: map[string]string{"attributeName": "attributeValue"}}
	experimentCpuMetricSet = MetricSet{Name: "cpu", Values: Series{2, 4, 6, 8},
		Tags: map[string]string{"tagName": "tagValue"}, Attributes: map[string]string{"attributeName": "attributeValue"}}
	experimentRequestsMetricSet       = MetricSet{Name: "requests"}
	experimentCpuWrongTagsMetricSet   = MetricSet{Name: "cpu", Tags: map[string]string{"differentTagName": "differentTagValue"}}
	controlNullNameMetricSet          = MetricSet{Values: Series{1, 3, 5, 7}, Tags: map[string]string{"tagName": "tagValue"}}
	experimentCpuEmptyValuesMetricSet = MetricSet{Name: "cpu", Values: Series{}, Tags: map[string]string{"tagName": "tagValue"}}
	controlErrorsMetricSet            = MetricSet{Name: "errors", Values: Series{10, 20, 30},
		Tags: map[string]string{"tagNameA": "tagValueA", "tagNameB": "tagValueB"}}
	experimentErrorsMetricSet = MetricSet{Name: "errors", Values: Series{60, 70, 80},
		Tags: map[string]string{"tagNameA": "tagValueA", "tagNameB": "tagValueB"}}
	experimentErrorsNoTagsMetricSet = MetricSet{Name: "errors", Values: Series{70, 80, 90}}
)

func metricConfigs(names ...string) []CanaryMetricConfig {
	out := make([]CanaryMetricConfig, len(names))
	for i, n := range names {
		out[i] = CanaryMetricConfig{Name: n}
	}
	return out
}

func TestKayentaMetricSetMixerServiceSpecErrors(t *testing.T) {
	tagged := func(name, k string) MetricSet { return MetricSet{Name: name, Tags: map[string]string{k: "tagValueA"}} }
	for _, tc := range []struct {
		name    string
		run     func() error
		message string
	}{
		{"mixOne() throws if control metric set name was not set", func() error {
			_, err := mixOne(tagged("", "tagKeyA"), tagged("metric1", "tagKeyB"))
			return err
		}, "control metric set name was not set"},
		{"mixOne() throws if experiment metric set name was not set", func() error {
			_, err := mixOne(tagged("metric1", "tagKeyA"), tagged("", "tagKeyB"))
			return err
		}, "experiment metric set name was not set"},
		{"inconsistent metric set names should throw an exception", func() error {
			_, err := mixOne(tagged("metric1", "tagKeyA"), tagged("metric2", "tagKeyB"))
			return err
		}, "does not match experiment metric set name"},
		{"inconsistent tag keys should throw an exception", func() error {
			_, err := Mix(metricConfigs("metric1"), []MetricSet{tagged("metric1", "tagKeyA")}, []MetricSet{tagged("metric1", "tagKeyB")}, MixOptions{})
			return err
		}, "different tag keys"},
		{"Missing metrics for control should throw an exception", func() error {
			_, err := Mix(metricConfigs("metric1"), nil, []MetricSet{tagged("metric1", "tagKeyA")}, MixOptions{})
			return err
		}, "no control metrics found"},
		{"Missing metrics for experiment should throw an exception", func() error {
			_, err := Mix(metricConfigs("metric1"), []MetricSet{tagged("metric1", "tagKeyA")}, nil, MixOptions{})
			return err
		}, "no experiment metrics found"},
	} {
		require.ErrorContains(t, tc.run(), tc.message, tc.name)
	}

	// "mixing #controlMetricSet.name and #experimentMetricSet.name should fail".
	for _, tc := range [][2]MetricSet{
		{controlCpuMetricSet, experimentRequestsMetricSet},
		{controlCpuMetricSet, experimentCpuWrongTagsMetricSet},
		{controlNullNameMetricSet, experimentCpuMetricSet},
		{{Name: "", Values: Series{1, 3, 5, 7}, Tags: map[string]string{"tagName": "tagValue"}}, experimentCpuMetricSet},
	} {
		_, err := mixOne(tc[0], tc[1])
		require.Error(t, err)
	}
}

func TestKayentaMetricSetMixerServiceSpecMixOne(t *testing.T) {
	// "mixing should succeed if metric set names, tags and # of values all match".
	p, err := mixOne(controlCpuMetricSet, experimentCpuMetricSet)
	require.NoError(t, err)
	require.Equal(t, "cpu", p.Name)
	require.Equal(t, map[string]Series{Control: {1, 3, 5, 7}, Experiment: {2, 4, 6, 8}}, p.Values)
	require.Equal(t, map[string]string{"tagName": "tagValue"}, p.Tags)
	require.Equal(t, map[string]map[string]string{
		Control:    {"attributeName": "attributeValue"},
		Experiment: {"attributeName": "attributeValue"},
	}, p.Attributes)
	// "Mixing sets should produce an id field".
	require.NotEmpty(t, p.ID)

	// "Mixing data sets with no data should back-fill both to all NaNs, with appropriate length".
	withTimes := func(ms MetricSet) MetricSet {
		ms.Values, ms.StartTimeMillis, ms.EndTimeMillis, ms.StepMillis = Series{}, 0, 60000*4, 60000
		return ms
	}
	p, err = mixOne(withTimes(controlCpuMetricSet), withTimes(experimentCpuMetricSet))
	require.NoError(t, err)
	for _, side := range []string{Control, Experiment} {
		require.Len(t, p.Values[side], 4)
		for _, v := range p.Values[side] {
			require.True(t, math.IsNaN(v))
		}
	}
}

func TestKayentaMetricSetMixerServiceSpecPairing(t *testing.T) {
	// "lists of metric sets are paired properly".
	type want struct {
		name                string
		tags                map[string]string
		control, experiment Series
	}
	cpu := func(c, e Series) want { return want{"cpu", map[string]string{"tagName": "tagValue"}, c, e} }
	errs := func(c, e Series) want {
		return want{"errors", map[string]string{"tagNameA": "tagValueA", "tagNameB": "tagValueB"}, c, e}
	}
	for i, tc := range []struct {
		names               []string
		control, experiment []MetricSet
		want                []want
	}{
		// 1:1
		{[]string{"cpu"}, []MetricSet{controlCpuMetricSet}, []MetricSet{experimentCpuEmptyValuesMetricSet},
			[]want{cpu(Series{1, 3, 5, 7}, Series{})}},
		{[]string{"errors"}, []MetricSet{controlErrorsMetricSet}, []MetricSet{experimentErrorsMetricSet},
			[]want{errs(Series{10, 20, 30}, Series{60, 70, 80})}},
		// 1:1, no-tags used as a placeholder
		{[]string{"errors"}, []MetricSet{controlErrorsMetricSet}, []MetricSet{experimentErrorsNoTagsMetricSet},
			[]want{errs(Series{10, 20, 30}, Series{})}},
		{[]string{"errors"}, []MetricSet{experimentErrorsNoTagsMetricSet}, []MetricSet{controlErrorsMetricSet},
			[]want{errs(Series{}, Series{10, 20, 30})}},
		// 2:2
		{[]string{"cpu", "errors"}, []MetricSet{controlCpuMetricSet, controlErrorsMetricSet},
			[]MetricSet{experimentCpuEmptyValuesMetricSet, experimentErrorsMetricSet},
			[]want{cpu(Series{1, 3, 5, 7}, Series{}), errs(Series{10, 20, 30}, Series{60, 70, 80})}},
		{[]string{"cpu", "errors"}, []MetricSet{controlErrorsMetricSet, controlCpuMetricSet},
			[]MetricSet{experimentCpuEmptyValuesMetricSet, experimentErrorsMetricSet},
			[]want{cpu(Series{1, 3, 5, 7}, Series{}), errs(Series{10, 20, 30}, Series{60, 70, 80})}},
		{[]string{"cpu", "errors"}, []MetricSet{controlCpuMetricSet, controlErrorsMetricSet},
			[]MetricSet{experimentErrorsMetricSet, experimentCpuMetricSet},
			[]want{cpu(Series{1, 3, 5, 7}, Series{2, 4, 6, 8}), errs(Series{10, 20, 30}, Series{60, 70, 80})}},
	} {
		pairs, err := Mix(metricConfigs(tc.names...), tc.control, tc.experiment, MixOptions{})
		require.NoError(t, err, "row %d", i)
		require.Len(t, pairs, max(len(tc.control), len(tc.experiment)), "row %d", i)
		for j, w := range tc.want {
			require.Equal(t, w.name, pairs[j].Name, "row %d", i)
			require.Equal(t, w.tags, pairs[j].Tags, "row %d", i)
			require.Equal(t, map[string]Series{Control: w.control, Experiment: w.experiment}, pairs[j].Values, "row %d", i)
		}
	}
}

// TestMixMismatchedTags shows spinnaker/spinnaker#6286: a label that differs
// between the canary and the baseline (here "deployment") leaves Kayenta two
// half-empty pairs, each judged Nodata; MixOptions.IgnoreTags pairs them.
func TestMixMismatchedTags(t *testing.T) {
	control := []MetricSet{{Name: "latency", Tags: map[string]string{"deployment": "app-baseline", "region": "eu"}, Values: Series{1, 2, 3},
		StartTimeMillis: 0, EndTimeMillis: 180000, StepMillis: 60000}}
	experiment := []MetricSet{{Name: "latency", Tags: map[string]string{"deployment": "app-canary", "region": "eu"}, Values: Series{1, 2, 4},
		StartTimeMillis: 0, EndTimeMillis: 180000, StepMillis: 60000}}

	pairs, err := Mix(metricConfigs("latency"), control, experiment, MixOptions{})
	require.NoError(t, err)
	require.Len(t, pairs, 2)
	require.Equal(t, Series{1, 2, 3}, pairs[0].Values[Control])
	require.Len(t, pairs[0].Values[Experiment], 3)
	require.True(t, math.IsNaN(pairs[0].Values[Experiment][0]))
	require.True(t, math.IsNaN(pairs[1].Values[Control][0]))
	require.Equal(t, Series{1, 2, 4}, pairs[1].Values[Experiment])
	require.NotEqual(t, pairs[0].ID, pairs[1].ID)

	cfg := CanaryConfig{Metrics: []CanaryMetricConfig{{Name: "latency", Groups: []string{"g"}}}, Classifier: &CanaryClassifierConfig{}}
	res, err := Judge(cfg, CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, pairs, Options{})
	require.NoError(t, err)
	require.Equal(t, ClassificationNodata, res.Results[0].Classification)
	require.Equal(t, ClassificationNodata, res.Results[1].Classification)
	require.Equal(t, "Canary Failed: 50% or more metrics returned NODATA", res.Score.ClassificationReason)

	_, err = Mix(metricConfigs("latency"), control, experiment, MixOptions{RejectUnpaired: true})
	require.ErrorContains(t, err, "the experiment has no series with tags {deployment=app-baseline, region=eu}")

	pairs, err = Mix(metricConfigs("latency"), control, experiment, MixOptions{IgnoreTags: []string{"deployment"}, RejectUnpaired: true})
	require.NoError(t, err)
	require.Len(t, pairs, 1)
	require.Equal(t, map[string]string{"region": "eu"}, pairs[0].Tags)
	require.Equal(t, Series{1, 2, 3}, pairs[0].Values[Control])
	require.Equal(t, Series{1, 2, 4}, pairs[0].Values[Experiment])

	// Dropping the label must not silently merge two series of one side.
	two := append(experiment, MetricSet{Name: "latency", Tags: map[string]string{"deployment": "app-canary-2", "region": "eu"}, Values: Series{9}})
	_, err = Mix(metricConfigs("latency"), control, two, MixOptions{IgnoreTags: []string{"deployment"}})
	require.ErrorContains(t, err, "more than one series with tags {region=eu}")
}

// TestMixPlaceholderDiscardsData shows Kayenta discarding tagged series when
// the same side also has an untagged one; RejectUnpaired refuses.
func TestMixPlaceholderDiscardsData(t *testing.T) {
	control := []MetricSet{{Name: "m"}, {Name: "m", Tags: map[string]string{"a": "1"}, Values: Series{5}}}
	experiment := []MetricSet{{Name: "m", Tags: map[string]string{"a": "1"}, Values: Series{6}}}
	pairs, err := Mix(metricConfigs("m"), control, experiment, MixOptions{})
	require.NoError(t, err)
	require.Len(t, pairs, 1)
	require.Equal(t, Series{}, pairs[0].Values[Control]) // Kayenta ignores the control's tagged series
	_, err = Mix(metricConfigs("m"), control, experiment, MixOptions{RejectUnpaired: true})
	require.ErrorContains(t, err, "the control has an untagged series beside tagged ones")
}
