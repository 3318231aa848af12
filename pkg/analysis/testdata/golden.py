#!/usr/bin/python3
"""Golden cases for pkg/analysis, computed independently of the Go code and of
Kayenta's code, with NumPy and SciPy.

Run with Debian's interpreter, which has python3-scipy:

    /usr/bin/python3 pkg/analysis/testdata/golden.py > pkg/analysis/testdata/golden.json

golden_test.go reads the JSON. What each section checks:

mannWhitney
    Kayenta's interval is R's wilcox.test(x, y, conf.int = TRUE, exact =
    FALSE, correct = TRUE): the set of shifts mu for which the two-sided,
    tie- and continuity-corrected normal-approximation Mann-Whitney test of
    x - mu against y does not reject at 1 - confLevel. Here that set is found
    with scipy.stats.mannwhitneyu(method="asymptotic") p-values, by
    bisection over the sorted pairwise differences x_i - y_j (the only places
    the p-value can change), clamped to [min x - max y, max x - min y] as
    Kayenta clamps. Kayenta then finds the ends with a root finder whose
    absolute tolerance is 1e-4, so the Go values must lie within that
    tolerance of these exact ends.
    Kayenta's "estimate" is the root of the same statistic at quantile 0:
    any shift where |U1(mu) - nm/2| <= 1/2 (scipy's U statistic), or the jump
    across zero. The script reports that region [estimateLow,
    estimateHigh] and the Hodges-Lehmann estimate (NumPy median of all
    pairwise differences), and asserts the latter lies in the region.
    scipy.optimize.brentq on the same statistic with Kayenta's tolerance is
    reported for information ("brentq"); it is a different Brent variant.

judge
    Whole canary configs and metric set pairs. Expected per-metric
    classification, reason, critical flag, mean ratio and descriptive
    statistics (NumPy; std with ddof=1) after NaN handling and outlier
    removal (IQR fences from numpy.percentile's default "linear" method,
    which is R-7, widened to the 1st/99th percentiles), the CLES effect size
    by brute force over all pairs, the classification rules written out
    below, group scores, and the weighted sum rounded with
    decimal.ROUND_HALF_UP. A case is rejected at generation time if any
    verdict would change anywhere inside the root finder's tolerance or the
    estimate region, so the expected verdicts do not depend on the root
    finder.

scores
    The scorer alone, from given classifications: group scores, weights,
    half-up rounding (including a value that half-even would round the other
    way), critical failures and the 50 % Nodata rule.
"""

import decimal
import itertools
import json
import math
import sys

import numpy as np
import scipy
from scipy import optimize, stats

TOL = 1e-4  # kayenta-mannwhitney BrentSolver TOLERANCE
TOLERANCE = 0.25  # NetflixACAJudge
CONF_LEVEL = 0.98


# ---------------------------------------------------------------- Mann-Whitney


def accepted(x, y, mu, alpha):
    p = stats.mannwhitneyu(x - mu, y, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue
    return p >= alpha


def u_centered(x, y, mu):
    """U1(mu) - nm/2, where U1 counts pairs with x - mu > y (ties one half)."""
    u1 = stats.mannwhitneyu(x - mu, y, alternative="two-sided", method="asymptotic").statistic
    return u1 - len(x) * len(y) / 2


def candidate_points(x, y):
    """The pairwise differences and the midpoints between them, sorted."""
    d = np.unique(np.subtract.outer(x, y).ravel())
    mids = (d[:-1] + d[1:]) / 2
    pts = np.sort(np.concatenate([d, mids]))
    return d, pts


def first_true(pts, pred):
    """Smallest index i with pred(pts[i]) for a predicate false then true."""
    lo, hi = 0, len(pts)
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(pts[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def breakpoint_at_or_below(d, p):
    return d[np.searchsorted(d, p, side="right") - 1]


def breakpoint_at_or_above(d, p):
    return d[np.searchsorted(d, p, side="left")]


def mann_whitney(x, y, conf_level):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    alpha = 1.0 - conf_level
    mu_min, mu_max = x.min() - y.max(), x.max() - y.min()
    d, pts = candidate_points(x, y)

    # Accepted shifts form one interval around the Hodges-Lehmann estimate
    # (the statistic is monotone in mu): bisect on each side of it.
    hl = float(np.median(np.subtract.outer(x, y).ravel()))
    if accepted(x, y, mu_min, alpha):
        lower = mu_min
    else:
        left = pts[pts <= hl]
        i = first_true(left, lambda m: accepted(x, y, m, alpha))
        lower = breakpoint_at_or_below(d, left[i]) if i < len(left) else hl
    if accepted(x, y, mu_max, alpha):
        upper = mu_max
    else:
        right = pts[pts >= hl]
        i = first_true(right, lambda m: not accepted(x, y, m, alpha))
        upper = mu_max if i == len(right) else breakpoint_at_or_above(d, right[i - 1]) if i > 0 else hl

    # Estimate region: U1(mu) - nm/2 is non-increasing in mu.
    est_low = pts[first_true(pts, lambda m: u_centered(x, y, m) <= 0.5)]
    est_low = breakpoint_at_or_below(d, est_low)
    j = first_true(pts, lambda m: u_centered(x, y, m) < -0.5)
    est_high = breakpoint_at_or_above(d, pts[j - 1]) if j > 0 else pts[0]
    assert est_low - 1e-12 <= hl <= est_high + 1e-12, (est_low, hl, est_high)

    # For information: SciPy's Brent on Kayenta's statistic.
    n, m = len(x), len(y)

    def wdiff(mu, zq):
        r = stats.rankdata(np.concatenate([x - mu, y]))
        dz = r[:n].sum() - n * (n + 1) / 2 - n * m / 2
        _, counts = np.unique(r, return_counts=True)
        sigma = math.sqrt(n * m / 12 * ((n + m + 1) - (counts**3 - counts).sum() / ((n + m) * (n + m - 1))))
        return (dz - np.sign(dz) * 0.5) / sigma - zq

    zq = stats.norm.ppf(alpha / 2)

    def root(q):
        fl, fu = wdiff(mu_min, q), wdiff(mu_max, q)
        if fl <= 0:
            return mu_min
        if fu >= 0:
            return mu_max
        return optimize.brentq(wdiff, mu_min, mu_max, args=(q,), xtol=TOL, rtol=4 * np.finfo(float).eps)

    fl0, fu0 = wdiff(mu_min, 0), wdiff(mu_max, 0)
    brent_est = mu_min if fl0 == 0 else mu_max if fu0 == 0 else (
        optimize.brentq(wdiff, mu_min, mu_max, args=(0,), xtol=TOL, rtol=4 * np.finfo(float).eps) if fl0 * fu0 < 0 else float("nan"))
    return {
        "lower": float(lower),
        "upper": float(upper),
        "estimateLow": float(est_low),
        "estimateHigh": float(est_high),
        "hodgesLehmann": hl,
        "brentq": [float(root(-zq)), float(root(zq)), float(brent_est)],
    }


def mw_cases():
    rs = np.random.RandomState(20240611)
    cases = []

    def add(name, x, y, conf, what):
        cases.append({"name": name, "checks": what, "experiment": [float(v) for v in x], "control": [float(v) for v in y],
                      "confidenceLevel": conf, **mann_whitney(x, y, conf)})

    add("kayenta-example", [10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0], 0.95,
        "Kayenta's MannWhitneySuite example: interval [6, 39], estimate 22.5")
    add("normal-shift", np.round(rs.normal(105, 10, 40), 3), np.round(rs.normal(100, 10, 40), 3), 0.98,
        "continuous data, a small shift, no ties")
    add("unequal-sizes", np.round(rs.normal(50, 5, 17), 2), np.round(rs.normal(40, 8, 63), 2), 0.98,
        "different sample sizes, a clear shift")
    add("heavy-ties", rs.randint(0, 5, 80).astype(float), rs.randint(1, 6, 70).astype(float), 0.98,
        "integer data, almost every value tied: the tie correction")
    add("negative", np.round(rs.normal(-3, 1, 30), 3), np.round(rs.normal(-1, 1, 30), 3), 0.98,
        "negative values, experiment lower")
    add("sparse-zeros", np.where(rs.rand(60) < 0.3, np.round(rs.exponential(2, 60), 2), 0.0),
        np.where(rs.rand(60) < 0.2, np.round(rs.exponential(2, 60), 2), 0.0), 0.98,
        "mostly zeros (error counts): the interval is pinned at 0 by the ties")
    add("large-scale", np.round(rs.normal(1.2e6, 3e4, 50), 0), np.round(rs.normal(1.0e6, 3e4, 50), 0), 0.98,
        "values around 1e6: the relative root-finder tolerance term")
    add("outlier", np.append(np.round(rs.normal(10, 1, 29), 3), 500.0), np.round(rs.normal(10, 1, 30), 3), 0.98,
        "one huge outlier barely moves a rank test")
    add("tiny", [1.0, 2.0], [3.0, 4.0, 5.0], 0.98,
        "tiny samples: the interval is clamped to [min x - max y, max x - min y]")
    return cases


# ---------------------------------------------------------------- judge


def percentile(values, p):
    return float(np.percentile(values, p))  # "linear" = R-7


def transform(values, nan_strategy, outliers, factor):
    v = np.asarray(values, dtype=float)
    v = np.where(np.isnan(v), 0.0, v) if nan_strategy == "replace" else v[~np.isnan(v)]
    if outliers == "remove" and len(v) > 0:
        p01, p25, p75, p99 = (percentile(v, p) for p in (1, 25, 75, 99))
        iqr = p75 - p25
        lo, hi = min(p01, p25 - factor * iqr), max(p99, p75 + factor * iqr)
        v = v[(v >= lo) & (v <= hi)]
    return v


def stats_of(v):
    if len(v) == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0, "count": 0}
    return {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "count": int(len(v))}


def mean_ratio(c, e):
    cm, em = c.mean(), e.mean()
    return float("nan") if cm == 0 or em == 0 else float(em / cm)


def cles(c, e):
    gt = np.greater.outer(e, c).sum()
    eq = np.equal.outer(e, c).sum()
    return float((gt + 0.5 * eq) / (len(e) * len(c)))


class Ambiguous(Exception):
    pass


def classify(name, exp, ctrl, a):
    """The Mann-Whitney classifier's rules (MannWhitneyClassifier.classify)."""
    if len(exp) == 0 or len(ctrl) == 0:
        if a["nanStrategy"] == "remove":
            reason = "Missing data for " + name
            if a["mustHaveData"] and not a["critical"]:
                return "NodataFailMetric", reason, 1.0, False, None
            return "Nodata", reason, 1.0, a["critical"], None
        return "Pass", None, 1.0, False, None
    if len(exp) == len(ctrl) and np.array_equal(np.sort(exp), np.sort(ctrl)):
        return "Pass", "The Canary and Baseline data are identical", 1.0, False, None
    if len(np.unique(np.concatenate([exp, ctrl]))) == 1:
        return "Pass", None, 1.0, False, None
    if len(np.unique(exp)) == 1 and len(np.unique(ctrl)) == 1:
        # Kayenta adds N(0, (v * 1e-5)^2) noise; any draw gives the same
        # verdict for the case below, so this one uses its own draw.
        rs = np.random.RandomState(7)
        exp = exp + rs.normal(0, abs(exp[0]) * 1e-5, len(exp))
        ctrl = ctrl + rs.normal(0, abs(ctrl[0]) * 1e-5, len(ctrl))
    mw = mann_whitney(exp, ctrl, CONF_LEVEL)
    ratio = mean_ratio(ctrl, exp)
    effect = cles(ctrl, exp) if a["measure"] == "cles" else ratio

    def verdict(lower, upper, estimate):
        bound = TOLERANCE * abs(estimate)
        high = a["direction"] in ("increase", "either") and lower > bound and (math.isnan(effect) or effect >= a["allowedIncrease"])
        low = a["direction"] in ("decrease", "either") and upper < -bound and (math.isnan(effect) or effect <= a["allowedDecrease"])
        return "High" if high else "Low" if low else "Pass"

    # The verdict must not depend on where in the tolerance / estimate region
    # a root finder lands.
    tol = lambda v: TOL + 8 * np.finfo(float).eps * abs(v)
    verdicts = {verdict(lo, up, est)
                for lo in (mw["lower"] - tol(mw["lower"]), mw["lower"] + tol(mw["lower"]))
                for up in (mw["upper"] - tol(mw["upper"]), mw["upper"] + tol(mw["upper"]))
                for est in (mw["estimateLow"] - tol(mw["estimateLow"]), mw["estimateHigh"] + tol(mw["estimateHigh"]), mw["hodgesLehmann"])}
    if len(verdicts) != 1:
        raise Ambiguous(f"{name}: {verdicts} {mw}")
    label = verdicts.pop()
    reason = None if label == "Pass" else f"{name} was classified as {label}"
    critical = False
    if a["critical"] and label == "High" and (math.isnan(effect) or effect >= a["criticalIncrease"]):
        return "High", f"The metric {name} was classified as High (Critical)", ratio, True, mw
    if a["critical"] and label == "Low" and (math.isnan(effect) or effect <= a["criticalDecrease"]):
        return "Low", f"The metric {name} was classified as Low (Critical)", ratio, True, mw
    return label, reason, ratio, critical, mw


def analysis_of(conf):
    c = (conf or {}).get("canary", {})
    es = c.get("effectSize", {})
    measure = es.get("measure", "meanRatio")
    neutral = 0.5 if measure == "cles" else 1.0
    return {
        "direction": c.get("direction", "either") if c.get("direction") in ("increase", "decrease") else "either",
        "nanStrategy": "replace" if c.get("nanStrategy") == "replace" else "remove",
        "outliers": "remove" if c.get("outliers", {}).get("strategy") == "remove" else "keep",
        "outlierFactor": float(c.get("outliers", {}).get("outlierFactor", 3.0)),
        "critical": bool(c.get("critical", False)),
        "mustHaveData": bool(c.get("mustHaveData", False)),
        "muted": bool(c.get("muted", False)),
        "measure": "cles" if measure == "cles" else "meanRatio",
        "allowedIncrease": float(es.get("allowedIncrease", neutral)),
        "allowedDecrease": float(es.get("allowedDecrease", neutral)),
        "criticalIncrease": float(es.get("criticalIncrease", neutral)),
        "criticalDecrease": float(es.get("criticalDecrease", neutral)),
    }


def round_half_up(x):
    return float(decimal.Decimal(repr(x)).quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP))


def score(results, weights, thresholds):
    """WeightedSumScorer + ThresholdScoreClassifier over unmuted results."""
    scored = [r for r in results if not r["muted"]]
    groups = {}
    for r in scored:
        for g in r["groups"]:
            groups.setdefault(g, []).append(r["classification"])
    group_scores = []
    for g, labels in groups.items():
        total = sum(labels.count(l) for l in ("Pass", "High", "Low", "NodataFailMetric"))
        group_scores.append({"name": g, "score": 0.0 if total == 0 else labels.count("Pass") / total * 100, "noData": total == 0})
    failed = [r for r in scored if r["critical"] and r["classification"] != "Pass"]
    nodata = sum(1 for r in scored if r["classification"] == "Nodata")
    if failed:
        summary, reason = 0.0, "Canary Failed: " + (failed[0]["reason"] or "null")
    elif scored and nodata / len(scored) * 100 >= 50:
        summary, reason = 0.0, "Canary Failed: 50% or more metrics returned NODATA"
    else:
        unweighted = [g for g in groups if g not in weights]
        share = (100 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
        total = sum((100.0 if gs["noData"] else gs["score"]) * (weights.get(gs["name"], share) / 100) for gs in group_scores)
        summary, reason = round_half_up(total), ""
    label = "Pass" if summary >= thresholds["pass"] else "Marginal" if summary >= thresholds["marginal"] else "Fail"
    return [{"name": g["name"], "score": g["score"]} for g in group_scores], {"score": summary, "classification": label, "classificationReason": reason}


def jsonable_series(v):
    return ["NaN" if math.isnan(x) else float(x) for x in v]


def judge_case(name, checks, metrics, weights, thresholds):
    """metrics: list of (name, groups, analysisConfigurations, control, experiment)."""
    config = {"name": name, "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
              "metrics": [], "classifier": {"groupWeights": weights}}
    pairs, results = [], []
    for mname, groups, conf, control, experiment in metrics:
        config["metrics"].append({"name": mname, "query": {"type": "prometheus", "customInlineTemplate": "PromQL:" + mname},
                                  "groups": groups, "analysisConfigurations": conf, "scopeName": "default"})
        pairs.append({"name": mname, "id": "id-" + mname, "tags": {}, "values": {
            "control": jsonable_series(control), "experiment": jsonable_series(experiment)}})
        a = analysis_of(conf)
        e = transform(experiment, a["nanStrategy"], a["outliers"], a["outlierFactor"])
        c = transform(control, a["nanStrategy"], a["outliers"], a["outlierFactor"])
        label, reason, ratio, critical, mw = classify(mname, e, c, a)
        results.append({"name": mname, "classification": label, "reason": reason, "critical": critical,
                        "muted": a["muted"], "groups": groups, "ratio": "NaN" if math.isnan(ratio) else ratio,
                        "experimentStats": stats_of(e), "controlStats": stats_of(c),
                        "noise": bool(len(e) and len(c) and len(np.unique(e)) == 1 and len(np.unique(c)) == 1 and e[0] != c[0]),
                        "mannWhitney": mw})
    group_scores, summary = score(results, weights, thresholds)
    return {"name": name, "checks": checks, "config": config, "thresholds": thresholds, "pairs": pairs,
            "results": results, "groupScores": group_scores, "score": summary}


def judge_cases():
    rs = np.random.RandomState(8675309)
    r3 = lambda a: np.round(a, 3)
    th = {"pass": 95.0, "marginal": 75.0}
    cases = []

    base = r3(rs.normal(100, 10, 60))
    cases.append(judge_case(
        "three-groups", "High, Low and Pass in weighted groups; direction; group shares of unweighted groups",
        [
            ("latency", ["latency"], {"canary": {"direction": "increase"}}, base, r3(rs.normal(130, 10, 60))),
            ("errors", ["errors"], {"canary": {}}, r3(rs.normal(5, 1, 60)), r3(rs.normal(5, 1, 60))),
            ("cpu", ["system"], {"canary": {"direction": "either"}}, r3(rs.normal(50, 5, 60)), r3(rs.normal(35, 5, 60))),
            ("memory", ["system"], {"canary": {"direction": "increase"}}, r3(rs.normal(50, 5, 60)), r3(rs.normal(35, 5, 60))),
        ], {"latency": 50.0, "errors": 30.0}, th))

    ctrl = r3(rs.normal(20, 2, 40))
    exp = r3(rs.normal(20, 2, 40))
    ctrl[::7] = np.nan
    exp[::2] = np.nan
    exp2 = exp.copy()
    cases.append(judge_case(
        "nan-strategies", "NaN removed (default) versus replaced by 0: counts, statistics and ratio change, the verdict stays "
        "Pass (a rank test hardly sees half the canary turning to 0; cf. spinnaker/kayenta#799)",
        [
            ("removed", ["g"], {"canary": {"nanStrategy": "remove"}}, ctrl, exp),
            ("replaced", ["g"], {"canary": {"nanStrategy": "replace"}}, ctrl, exp2),
        ], {}, th))

    ctrl = r3(rs.normal(10, 1, 80))
    exp = r3(rs.normal(10, 1, 80))
    exp[[5, 17, 33, 60]] = [95.0, 120.0, 88.0, 140.0]
    ctrl[[9]] = [-60.0]
    cases.append(judge_case(
        "outliers", "IQR outlier removal with Kayenta's widened fences: counts and statistics after removal",
        [
            ("kept", ["g"], {"canary": {}}, ctrl, exp),
            ("removed", ["g"], {"canary": {"outliers": {"strategy": "remove", "outlierFactor": 3.0}}}, ctrl, exp),
            ("removed-factor-1", ["g"], {"canary": {"outliers": {"strategy": "remove", "outlierFactor": 1}}}, ctrl, exp),
        ], {}, th))

    cases.append(judge_case(
        "critical", "a critical High fails the canary with score 0 and the metric's reason",
        [
            ("ok", ["g"], {"canary": {}}, r3(rs.normal(10, 1, 30)), r3(rs.normal(10, 1, 30))),
            ("latency", ["g"], {"canary": {"critical": True, "direction": "increase"}}, r3(rs.normal(10, 1, 30)), r3(rs.normal(20, 1, 30))),
        ], {}, th))

    cases.append(judge_case(
        "critical-threshold", "a critical metric beyond allowedIncrease but below criticalIncrease is High, not critical",
        [
            ("latency", ["g"], {"canary": {"critical": True, "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 3.0}}},
             r3(rs.normal(10, 1, 30)), r3(rs.normal(15, 1, 30))),
            ("ok", ["g"], {"canary": {}}, r3(rs.normal(10, 1, 30)), r3(rs.normal(10, 1, 30))),
        ], {}, {"pass": 50.0, "marginal": 25.0}))

    cases.append(judge_case(
        "nodata", "half the metrics without data: the 50 % Nodata rule",
        [
            ("a", ["g"], {"canary": {}}, [math.nan] * 10, r3(rs.normal(1, 0.1, 10))),
            ("b", ["g"], {"canary": {}}, r3(rs.normal(1, 0.1, 10)), []),
            ("c", ["g"], {"canary": {}}, r3(rs.normal(1, 0.1, 10)), r3(rs.normal(1, 0.1, 10))),
            ("d", ["h"], {"canary": {}}, r3(rs.normal(1, 0.1, 10)), r3(rs.normal(1, 0.1, 10))),
        ], {}, th))

    cases.append(judge_case(
        "must-have-data", "mustHaveData turns no data into NodataFailMetric, which fails its group; a Nodata-only group counts 100",
        [
            ("required", ["g"], {"canary": {"mustHaveData": True}}, [], r3(rs.normal(1, 0.1, 10))),
            ("fine", ["g"], {"canary": {}}, r3(rs.normal(1, 0.1, 10)), r3(rs.normal(1, 0.1, 10))),
            ("optional", ["h"], {"canary": {}}, [], []),
            ("more", ["i"], {"canary": {}}, r3(rs.normal(1, 0.1, 10)), r3(rs.normal(1, 0.1, 10))),
        ], {}, th))

    cases.append(judge_case(
        "muted", "a muted High is reported but not scored",
        [
            ("noisy", ["g"], {"canary": {"muted": True}}, r3(rs.normal(10, 1, 30)), r3(rs.normal(20, 1, 30))),
            ("ok", ["g"], {"canary": {}}, r3(rs.normal(10, 1, 30)), r3(rs.normal(10, 1, 30))),
        ], {}, th))

    ctrl = r3(rs.normal(100, 5, 50))
    cases.append(judge_case(
        "effect-size", "meanRatio and CLES thresholds keep significant but small changes from failing",
        [
            ("ratio-small", ["g"], {"canary": {"effectSize": {"allowedIncrease": 1.5}}}, ctrl, r3(rs.normal(120, 5, 50))),
            ("ratio-large", ["g"], {"canary": {"effectSize": {"allowedIncrease": 1.1}}}, ctrl, r3(rs.normal(130, 5, 50))),
            ("cles-small", ["g"], {"canary": {"effectSize": {"measure": "cles", "allowedIncrease": 0.99}}}, ctrl, r3(rs.normal(108, 5, 50))),
            ("cles-large", ["g"], {"canary": {"effectSize": {"measure": "cles", "allowedIncrease": 0.8}}}, ctrl, r3(rs.normal(125, 5, 50))),
            ("low-ratio", ["g"], {"canary": {"effectSize": {"allowedDecrease": 0.9}}}, ctrl, r3(rs.normal(70, 5, 50))),
        ], {}, {"pass": 40.0, "marginal": 20.0}))

    cases.append(judge_case(
        "special-series", "constant series (Kayenta's noise rule), identical data, a single value, zero means",
        [
            ("constant", ["g"], {"canary": {}}, [1.0] * 20, [10.0] * 20),
            ("identical", ["g"], {"canary": {}}, [3.0, 1.0, 2.0], [1.0, 2.0, 3.0]),
            ("single-value", ["g"], {"canary": {}}, [7.0] * 5, [7.0] * 3),
            ("zero-control", ["g"], {"canary": {}}, [0.0] * 10, r3(rs.normal(50, 1, 10))),
        ], {}, th))
    return cases


def score_cases():
    th = {"pass": 95.0, "marginal": 75.0}
    r = lambda c, groups, critical=False, muted=False, reason=None: {
        "classification": c, "groups": groups, "critical": critical, "muted": muted, "reason": reason}
    cases = []

    def add(name, checks, results, weights, thresholds=th):
        group_scores, summary = score(results, weights, thresholds)
        cases.append({"name": name, "checks": checks, "results": results, "weights": weights, "thresholds": thresholds,
                      "groupScores": group_scores, "score": summary})

    add("half-up", "0.125 rounds to 0.13 (half-even would give 0.12)",
        [r("Pass", ["a"])] + [r("High", ["a"])] * 7 + [r("High", ["b"])], {"a": 1.0, "b": 99.0})
    add("thirds", "one third of a group passes: 33.33",
        [r("Pass", ["a"]), r("High", ["a"]), r("Low", ["a"])], {})
    add("shares", "unweighted groups share what the weights leave",
        [r("Pass", ["a"]), r("High", ["b"]), r("Pass", ["c"]), r("Pass", ["c"]), r("Low", ["c"])], {"a": 40.0})
    add("multi-group", "a metric in two groups counts in both",
        [r("Pass", ["a", "b"]), r("High", ["b"])], {"a": 50.0, "b": 50.0})
    add("nodata-group", "a group with only Nodata scores 0 but counts 100 in the sum",
        [r("Pass", ["a"]), r("High", ["a"]), r("Nodata", ["b"])], {"a": 50.0, "b": 50.0})
    add("nodata-fail", "NodataFailMetric is a failure in its group",
        [r("Pass", ["a"]), r("NodataFailMetric", ["a"])], {})
    add("critical", "the first critical non-Pass result names the failure",
        [r("Pass", ["a"]), r("High", ["a"], True, reason="The metric x was classified as High (Critical)"), r("Nodata", ["a"], True, reason="Missing data for y")], {})
    add("critical-muted", "a muted critical failure does not fail the canary",
        [r("Pass", ["a"]), r("High", ["a"], True, True, "The metric x was classified as High (Critical)")], {})
    add("nodata-half", "exactly half Nodata fails",
        [r("Nodata", ["a"]), r("Pass", ["a"])], {})
    add("marginal", "a score between the thresholds is Marginal",
        [r("Pass", ["a"])] * 4 + [r("High", ["a"])], {}, {"pass": 95.0, "marginal": 75.0})
    add("empty", "no metrics at all: score 0",
        [], {})
    return cases


def main():
    out = {
        "generator": "pkg/analysis/testdata/golden.py",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "rootTolerance": TOL,
        "mannWhitney": mw_cases(),
        "judge": judge_cases(),
        "scores": score_cases(),
    }
    json.dump(out, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
