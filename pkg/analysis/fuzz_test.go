package analysis

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

var fuzzPalette = []float64{
	math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 5e-324, 1e-320, math.MaxFloat64, -math.MaxFloat64,
	0.5, 1e-5, -1, 1e15, 1 + 1e-15, 1e-300, 3.3333333333333335,
}

// decodeSeries turns fuzz bytes into a series rich in ties and special
// values: a byte below 200 is a small integer (0..19), 200..249 picks from
// fuzzPalette, 250..255 takes the next 8 bytes as raw float64 bits.
func decodeSeries(b []byte, limit int) (Series, []byte) {
	var s Series
	for len(b) > 0 && len(s) < limit {
		c := b[0]
		b = b[1:]
		switch {
		case c < 200:
			s = append(s, float64(c%20))
		case c < 250:
			s = append(s, fuzzPalette[int(c-200)%len(fuzzPalette)])
		case len(b) >= 8:
			s = append(s, math.Float64frombits(binary.LittleEndian.Uint64(b)))
			b = b[8:]
		}
	}
	return s, b
}

// FuzzJudge runs the whole judge on arbitrary series and settings: it must
// not panic, must not hang, must classify every metric with one of
// Kayenta's labels, keep the score in [0, 100], and marshal to JSON.
func FuzzJudge(f *testing.F) {
	f.Add(byte(0), byte(5), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add(byte(0xff), byte(3), []byte{200, 200, 200, 1, 2, 3})
	f.Add(byte(0x12), byte(4), []byte{7, 7, 7, 7, 8, 8, 8, 8})
	f.Add(byte(0x21), byte(2), []byte{201, 202, 203, 204, 205})
	f.Add(byte(0x04), byte(0), []byte{1, 2, 3})
	f.Add(byte(0x08), byte(6), []byte{0, 0, 0, 0, 0, 0, 19, 19, 19, 19, 19, 19})
	f.Add(byte(0x30), byte(3), []byte{205, 205, 205, 206, 206, 206})
	f.Add(byte(0x01), byte(2), append([]byte{250, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, 1, 2, 3))
	f.Fuzz(func(t *testing.T, flags, split byte, data []byte) {
		controlBytes, experimentBytes := data, []byte(nil)
		if int(split) < len(data) {
			controlBytes, experimentBytes = data[:split], data[split:]
		}
		control, _ := decodeSeries(controlBytes, 64)
		experiment, _ := decodeSeries(experimentBytes, 64)

		canary := map[string]any{}
		if flags&1 != 0 {
			canary["nanStrategy"] = "replace"
		}
		if flags&2 != 0 {
			canary["outliers"] = map[string]any{"strategy": "remove", "outlierFactor": float64(flags>>6) + 0.5}
		}
		canary["direction"] = []string{"either", "increase", "decrease", "sideways"}[(flags>>2)&3]
		if flags&16 != 0 {
			canary["effectSize"] = map[string]any{"measure": "cles", "allowedIncrease": 0.6, "criticalDecrease": 0.3}
		} else {
			canary["effectSize"] = map[string]any{"allowedIncrease": 1.1, "criticalIncrease": 2.0}
		}
		canary["critical"] = flags&32 != 0
		canary["mustHaveData"] = flags&64 != 0
		cfg := CanaryConfig{
			Metrics: []CanaryMetricConfig{
				{Name: "m", Groups: []string{"a"}, AnalysisConfigurations: map[string]any{"canary": canary}},
				{Name: "same", Groups: []string{"b"}},
			},
			Classifier: &CanaryClassifierConfig{GroupWeights: map[string]float64{"a": 70}},
		}
		pairs := []MetricSetPair{
			{Name: "m", ID: "1", Values: map[string]Series{Control: control, Experiment: experiment}},
			{Name: "same", ID: "2", Values: map[string]Series{Control: control, Experiment: control}},
		}
		res, err := Judge(cfg, CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, pairs, Options{})
		require.NoError(t, err)
		require.Len(t, res.Results, 2)
		labels := []string{ClassificationPass, ClassificationHigh, ClassificationLow, ClassificationNodata,
			ClassificationNodataFailMetric, ClassificationError}
		for _, r := range res.Results {
			require.Contains(t, labels, r.Classification)
			if r.Classification == ClassificationHigh || r.Classification == ClassificationLow {
				require.NotEmpty(t, r.ClassificationReason)
			}
		}
		// A series judged against itself never fails.
		require.Contains(t, []string{ClassificationPass, ClassificationNodata, ClassificationError}, res.Results[1].Classification)
		score := float64(res.Score.Score)
		require.True(t, score >= 0 && score <= 100, "score %v", score)
		require.Contains(t, []string{ScorePass, ScoreMarginal, ScoreFail}, res.Score.Classification)
		if flags&1 == 0 {
			// NaN removed: the statistics count only real samples.
			real := slices.DeleteFunc(slices.Clone(experiment), math.IsNaN)
			require.LessOrEqual(t, res.Results[0].ExperimentMetadata.Stats.Count, len(real))
		}
		_, err = json.Marshal(res)
		require.NoError(t, err)
	})
}

// FuzzSeriesJSON: any JSON a client sends as a series either fails to
// decode or round-trips.
func FuzzSeriesJSON(f *testing.F) {
	for _, s := range []string{`[]`, `[1,2.5,"NaN",null]`, `["Infinity","-Infinity",-0]`, `[1e999]`, `{}`, `["x"]`, `[1,`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Series
		if json.Unmarshal(b, &s) != nil {
			return
		}
		out, err := json.Marshal(s)
		require.NoError(t, err)
		var back Series
		require.NoError(t, json.Unmarshal(out, &back))
		require.Len(t, back, len(s))
		for i := range s {
			require.True(t, s[i] == back[i] || math.IsNaN(s[i]) && math.IsNaN(back[i]), "%v != %v", s[i], back[i])
		}
	})
}
