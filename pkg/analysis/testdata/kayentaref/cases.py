#!/usr/bin/python3
"""Writes input.txt for Harness.scala: the golden cases of ../golden.json and
a seeded set of random metrics with random judge settings, so that Kayenta's
own code and pkg/analysis can be compared bit for bit (kayentaref_test.go).

    /usr/bin/python3 pkg/analysis/testdata/kayentaref/cases.py
"""

import json
import math
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def fmt(values):
    if len(values) == 0:
        return "-"
    out = []
    for v in values:
        v = float(v)
        out.append("NaN" if math.isnan(v) else "Infinity" if v == math.inf else "-Infinity" if v == -math.inf else repr(v))
    return ",".join(out)


def line(name, kind, control, experiment, conf=0.98, tolerance=0.25, direction="either", nan="remove", outliers="keep",
         factor=3.0, critical=False, must=False, measure="meanRatio", ai=1.0, ad=1.0, ci=1.0, cd=1.0, seed=1801550181):
    return "\t".join([name, kind, repr(conf), repr(tolerance), direction, nan, outliers, repr(float(factor)),
                      str(critical).lower(), str(must).lower(), measure, repr(float(ai)), repr(float(ad)), repr(float(ci)),
                      repr(float(cd)), str(seed), fmt(control), fmt(experiment)])


def golden_lines():
    g = json.load(open(os.path.join(here, "..", "golden.json")))
    out = []
    for c in g["mannWhitney"]:
        out.append(line("golden-mw/" + c["name"], "mw", c["control"], c["experiment"], conf=c["confidenceLevel"]))
    for case in g["judge"]:
        for m, p in zip(case["config"]["metrics"], case["pairs"]):
            canary = m.get("analysisConfigurations", {}).get("canary", {})
            es = canary.get("effectSize", {})
            measure = "cles" if es.get("measure") == "cles" else "meanRatio"
            neutral = 0.5 if measure == "cles" else 1.0
            val = lambda xs: [math.nan if x == "NaN" else x for x in xs]
            out.append(line(
                "golden-judge/%s/%s" % (case["name"], m["name"]), "metric", val(p["values"]["control"]), val(p["values"]["experiment"]),
                direction=canary.get("direction", "either"), nan=canary.get("nanStrategy", "none"),
                outliers=canary.get("outliers", {}).get("strategy", "none"), factor=canary.get("outliers", {}).get("outlierFactor", 3.0),
                critical=canary.get("critical", False), must=canary.get("mustHaveData", False), measure=measure,
                ai=es.get("allowedIncrease", neutral), ad=es.get("allowedDecrease", neutral),
                ci=es.get("criticalIncrease", neutral), cd=es.get("criticalDecrease", neutral)))
    return out


def random_lines(count):
    rs = np.random.RandomState(424242)
    out = []
    shapes = ["normal", "ties", "sparse", "constant", "same-constant", "identical", "tiny", "large", "nans",
              "outliers", "negative", "empty", "small", "zeros", "signed-zero", "mixed"]
    for i in range(count):
        shape = shapes[i % len(shapes)]
        n, m = int(rs.randint(2, 60)), int(rs.randint(2, 60))
        shift = float(rs.choice([0.0, 0.05, 0.3, 1.0, 3.0]))
        if shape == "normal":
            c, e = rs.normal(10, 2, n), rs.normal(10 + shift * 2, 2, m)
        elif shape == "ties":
            c, e = rs.randint(0, 6, n).astype(float), rs.randint(0, 6, m).astype(float) + (shift > 1)
        elif shape == "sparse":
            c = np.where(rs.rand(n) < 0.2, rs.exponential(1, n), 0.0)
            e = np.where(rs.rand(m) < 0.2 + shift / 5, rs.exponential(1, m), 0.0)
        elif shape == "constant":
            c, e = np.full(n, float(rs.choice([1.0, 2.5, 1e-3, 0.0, -4.0]))), np.full(m, float(rs.choice([1.0, 3.0, 1e-3, 7e5, -2.0])))
        elif shape == "same-constant":
            v = float(rs.choice([0.0, 1.0, 42.0]))
            c, e = np.full(n, v), np.full(m, v)
        elif shape == "identical":
            c = np.round(rs.normal(5, 1, n), 2)
            e = rs.permutation(c)
        elif shape == "tiny":
            c, e = rs.normal(1e-6, 1e-7, n), rs.normal(1e-6 * (1 + shift), 1e-7, m)
        elif shape == "large":
            c, e = np.round(rs.normal(1e9, 1e7, n)), np.round(rs.normal(1e9 * (1 + shift / 10), 1e7, m))
        elif shape == "nans":
            c, e = rs.normal(10, 1, n), rs.normal(10 + shift, 1, m)
            c[rs.rand(n) < 0.3] = np.nan
            e[rs.rand(m) < 0.5] = np.nan
        elif shape == "outliers":
            c, e = rs.normal(10, 1, n), rs.normal(10 + shift, 1, m)
            e[rs.randint(0, m, 3)] = rs.choice([100.0, -100.0, 1e6])
        elif shape == "negative":
            c, e = rs.normal(-10, 3, n), rs.normal(-10 - 3 * shift, 3, m)
        elif shape == "empty":
            c, e = (np.array([]), rs.normal(1, 1, m)) if rs.rand() < 0.5 else (rs.normal(1, 1, n), np.full(m, np.nan))
        elif shape == "small":
            c, e = rs.normal(10, 1, int(rs.randint(1, 4))), rs.normal(10 + 5 * shift, 1, int(rs.randint(1, 4)))
        elif shape == "zeros":
            c, e = np.zeros(n), np.abs(rs.normal(shift, 1, m))
        elif shape == "signed-zero":
            c = rs.choice([0.0, -0.0, 1.0], n)
            e = rs.choice([-0.0, 0.0, 1.0, 2.0], m)
        else:  # mixed
            c = np.concatenate([rs.normal(10, 1, n), [np.nan, np.inf] if rs.rand() < 0.3 else []])
            e = np.concatenate([rs.normal(10 + shift, 1, m), [-np.inf] if rs.rand() < 0.3 else []])
        if shape not in ("ties", "constant", "same-constant", "signed-zero", "zeros", "identical"):
            c, e = np.round(c, 6) if shape != "tiny" else c, np.round(e, 6) if shape != "tiny" else e
        measure = "cles" if rs.rand() < 0.3 else "meanRatio"
        neutral = 0.5 if measure == "cles" else 1.0
        pick = lambda *xs: xs[int(rs.randint(0, len(xs)))]
        conf, tol = (0.98, 0.25) if rs.rand() < 0.8 else (0.95, 0.10)
        out.append(line(
            "random/%03d-%s" % (i, shape), "metric", c, e, conf=conf, tolerance=tol,
            direction=pick("either", "increase", "decrease", "none"),
            nan=pick("remove", "replace", "none"), outliers=pick("keep", "keep", "remove"),
            factor=pick(3.0, 1.5, 0.5), critical=bool(rs.rand() < 0.3), must=bool(rs.rand() < 0.3), measure=measure,
            ai=pick(neutral, neutral * 1.2, neutral * 1.6), ad=pick(neutral, neutral * 0.8, neutral * 0.4),
            ci=pick(neutral, neutral * 1.5), cd=pick(neutral, neutral * 0.6), seed=int(rs.randint(-2**31, 2**31 - 1))))
    return out


def score_line(name, pass_, marginal, weights, results):
    w = ";".join("%s=%r" % (g, float(v)) for g, v in weights.items())
    r = ";".join("%s|%s|%s|%s" % (x["classification"], "+".join(x["groups"]), str(x["critical"]).lower(), x.get("reason") or "-")
                 for x in results if not x.get("muted"))
    return "\t".join([name, "score", repr(float(pass_)), repr(float(marginal)), w, r])


def score_lines(count):
    g = json.load(open(os.path.join(here, "..", "golden.json")))
    out = [score_line("golden-scores/" + c["name"], c["thresholds"]["pass"], c["thresholds"]["marginal"], c["weights"], c["results"])
           for c in g["scores"]]
    rs = np.random.RandomState(31337)
    labels = ["Pass", "Pass", "Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"]
    for i in range(count):
        groups = ["g%d" % k for k in range(int(rs.randint(1, 6)))]
        weights = {}
        for grp in groups:
            r = rs.rand()
            if r < 0.4:
                weights[grp] = float(rs.randint(0, 60))
            elif r < 0.6:
                weights[grp] = float(np.round(rs.rand() * 40, int(rs.randint(0, 3))))
        if rs.rand() < 0.2:
            weights["unused"] = 10.0
        results = []
        for k in range(int(rs.randint(0, 12))):
            label = labels[int(rs.randint(0, len(labels)))]
            critical = bool(rs.rand() < 0.1)
            results.append({"classification": label, "groups": [str(x) for x in rs.choice(groups, min(len(groups), int(rs.randint(1, 3))), replace=False)],
                            "critical": critical, "reason": None if label == "Pass" or rs.rand() < 0.2 else "reason %d" % k})
        out.append(score_line("random-score/%03d" % i, rs.choice([95.0, 75.0, 50.0]), rs.choice([75.0, 50.0, 25.0]), weights, results))
    return out


def main():
    lines = (["# generated by cases.py; columns are described in Harness.scala"] + golden_lines() + random_lines(640) +
             score_lines(400))
    with open(os.path.join(here, "input.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d cases" % (len(lines) - 1))


if __name__ == "__main__":
    main()
