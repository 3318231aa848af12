// Package analysis is levitated's canary judge: a pure Go port of Kayenta's
// NetflixACAJudge-v1.0 (spinnaker/kayenta, kayenta-judge and
// kayenta-mannwhitney), which compares a canary ("experiment") with a
// baseline ("control") metric by metric and turns the per-metric
// classifications into a score.
//
// The package does no I/O. [Judge] classifies metric set pairs that the caller
// already holds; [Analyze] fetches them through the one-method [Source]
// interface declared here, pairs them the way Kayenta's MetricSetMixerService
// does ([Mix]), and judges them.
//
// Per metric, in Kayenta's order:
//
//  1. NaN handling ("nanStrategy": remove, the default, or replace with 0);
//  2. optional outlier removal (IQR fences widened to the 1st/99th
//     percentiles, Kayenta's reduceSensitivity mode);
//  3. the Mann-Whitney classifier: no-data and identical-data short cuts,
//     Gaussian noise when both series are constant, a two-sided
//     Mann-Whitney/Wilcoxon rank-sum confidence interval (normal
//     approximation with tie and continuity correction, 98 %) around the
//     Hodges-Lehmann estimate, a ±25 % tolerance band around that estimate,
//     effect sizes (mean ratio or CLES) with allowed and critical
//     increase/decrease, direction, critical and mustHaveData flags;
//  4. scoring: muted metrics dropped, group scores (pass / (pass + high + low +
//     nodataFailMetric)), weighted sum rounded half-up to 2 decimals, critical
//     failures and the 50 % Nodata rule force 0, and the score is classified
//     Pass / Marginal / Fail against the thresholds.
//
// Arithmetic follows the Scala/Java sources operation by operation, including
// Apache Commons Math 3.6.1's Mean, Variance, Percentile, NaturalRanking
// and Precision.round, and Kayenta's port of R's zeroin (BrentSolver).
// Products that feed a sum are wrapped in float64() so that no platform fuses
// them into FMA instructions, which Java never does. docs/analysis.md lists
// the sources and every known difference.
//
// The zero Options and MixOptions are Kayenta's behaviour, which the
// Kayenta-compatible API (pkg/kayenta) uses. NativeOptions and
// MixOptions{IgnoreTags, RejectUnpaired} fix the flaws Kayenta's users
// report (scale-dependent intervals, noise for constant series, critical
// metrics that cannot fail on Error, 32-bit CLES, groups without data
// counted as perfect); the native analysis API (pkg/canaryapi) uses them.
package analysis
