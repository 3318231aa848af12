#!/bin/sh
# Regenerates output.txt by running Kayenta's own judge code on input.txt.
#
#   pkg/analysis/testdata/kayentaref/run.sh /path/to/kayenta-checkout
#
# Needs scalac 2.11+ and Commons Math 3.6.1 (Debian: apt-get install scala
# libcommons-math3-java). The Kayenta checkout should be at the commit in
# KAYENTA_COMMIT; its sources are compiled in a temporary directory and not
# copied into this repository.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kayenta=$1
KAYENTA_COMMIT=a69573be9d8fededacf80817e4151a2c8df41276
math=${COMMONS_MATH:-/usr/share/java/commons-math3.jar}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git -C "$kayenta" rev-parse HEAD 2>/dev/null | grep -q "$KAYENTA_COMMIT" ||
  echo "warning: $kayenta is not at $KAYENTA_COMMIT" >&2
j=kayenta-judge/src/main/scala/com/netflix/kayenta/judge
m=kayenta-mannwhitney/src/main/scala/com/netflix/kayenta/mannwhitney
for f in \
  $m/MannWhitney.scala $m/MannWhitneyException.scala \
  kayenta-mannwhitney/src/main/java/com/netflix/kayenta/mannwhitney/BrentSolver.java \
  $j/classifiers/metric/BaseMetricClassifier.scala $j/classifiers/metric/MannWhitneyClassifier.scala \
  $j/detectors/BaseOutlierDetector.scala $j/detectors/IQRDetector.scala \
  $j/preprocessing/Transforms.scala $j/stats/DescriptiveStatistics.scala $j/stats/EffectSizes.scala \
  $j/utils/RandomUtils.scala $j/scorers/BaseScorer.scala $j/scorers/WeightedSumScorer.scala \
  $j/classifiers/score/BaseScoreClassifier.scala $j/classifiers/score/ThresholdScoreClassifier.scala; do
  if git -C "$kayenta" cat-file -e "HEAD:$f" 2>/dev/null; then
    git -C "$kayenta" show "HEAD:$f" >"$work/$(basename "$f")"
  else
    cp "$kayenta/$f" "$work/"
  fi
done
mkdir "$work/classes"
javac -nowarn -d "$work/classes" -cp "$math" "$work/BrentSolver.java" "$here/CanaryAnalysisResult.java"
scalac -nowarn -d "$work/classes" -cp "$math:$work/classes" "$work"/*.scala "$here/Metric.scala" "$here/Harness.scala"
scala -cp "$math:$work/classes" levitated.kayentaref.Harness "$here/input.txt" >"$here/output.txt"
echo "wrote $here/output.txt ($(wc -l <"$here/output.txt") cases)"
