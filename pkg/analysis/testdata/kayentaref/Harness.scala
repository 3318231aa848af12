// Harness runs Kayenta's own judge code (NetflixACAJudge's per-metric steps:
// NaN handling, IQR outlier removal, DescriptiveStatistics.summary and
// MannWhitneyClassifier) over the cases in input.txt and prints every
// result as exact hexadecimal doubles, for kayentaref_test.go to compare bit
// for bit. It is levitated's code; run.sh compiles it against Kayenta's
// sources, which are not copied into this repository.
//
// Input, one case per line, tab-separated, "name kind ...":
//   kind "mw" or "metric": conf tolerance direction nanStrategy outlierStrategy
//   outlierFactor critical mustHaveData measure allowedIncrease allowedDecrease
//   criticalIncrease criticalDecrease seed control experiment, values
//   comma-separated; "mw" runs MannWhitney.mannWhitneyUTest(experiment, control,
//   conf) only, "metric" the judge's classifyMetric steps.
//   kind "score": pass marginal weights results, weights "group=weight;...",
//   results "classification|group+group|critical|reason;...", muted results
//   already left out as ScoringHelper does; runs WeightedSumScorer and
//   ThresholdScoreClassifier.
package levitated.kayentaref

import com.netflix.kayenta.canary.results.CanaryAnalysisResult
import com.netflix.kayenta.judge.Metric
import com.netflix.kayenta.judge.classifiers.score.ThresholdScoreClassifier
import com.netflix.kayenta.judge.scorers.WeightedSumScorer
import com.netflix.kayenta.judge.classifiers.metric._
import com.netflix.kayenta.judge.detectors.IQRDetector
import com.netflix.kayenta.judge.preprocessing.Transforms
import com.netflix.kayenta.judge.stats.{DescriptiveStatistics, MetricStatistics}
import com.netflix.kayenta.judge.utils.RandomUtils
import com.netflix.kayenta.mannwhitney.MannWhitney

import scala.collection.JavaConverters._

object Harness {
  def hex(d: Double): String = java.lang.Double.toHexString(d)

  def values(s: String): Array[Double] =
    if (s == "-") Array[Double]() else s.split(",").map(java.lang.Double.parseDouble)

  def stats(s: MetricStatistics): String =
    Seq(hex(s.min), hex(s.max), hex(s.mean), hex(s.std), s.count.toString).mkString(",")

  def main(args: Array[String]): Unit = {
    for (line <- scala.io.Source.fromFile(args(0)).getLines() if line.nonEmpty && !line.startsWith("#")) {
      val f = line.split("\t", -1)
      if (f(1) == "score") score(f) else metric(f)
    }
  }

  def score(f: Array[String]): Unit = {
    val Array(name, _, pass, marginal, weightsText, resultsText) = f
    val weights = weightsText.split(";").filter(_.nonEmpty).map { w =>
      val Array(g, v) = w.split("="); g -> v.toDouble
    }.toMap
    val results = resultsText.split(";").filter(_.nonEmpty).map { r =>
      val Array(c, groups, critical, reason) = r.split("\\|", -1)
      new CanaryAnalysisResult(c, if (reason == "-") null else reason, groups.split("\\+").toList.asJava, critical.toBoolean)
    }.toList
    val s = new WeightedSumScorer(weights).score(results)
    val c = new ThresholdScoreClassifier(pass.toDouble, marginal.toDouble).classify(s)
    val groups = s.groupScores.get.map(g => g.name + "=" + hex(g.score)).sorted.mkString(",")
    println(Seq(name, hex(c.score), c.classification.toString, c.reason.getOrElse("-"), if (groups.isEmpty) "-" else groups).mkString("\t"))
  }

  def metric(f: Array[String]): Unit = {
    {
      val Array(name, kind, conf, tolerance, direction, nanStrategy, outlierStrategy, outlierFactor,
        critical, mustHaveData, measure, allowedIncrease, allowedDecrease, criticalIncrease, criticalDecrease,
        seed, controlText, experimentText) = f
      val control = values(controlText)
      val experiment = values(experimentText)
      kind match {
        case "mw" =>
          val r = new MannWhitney().mannWhitneyUTest(experiment, control, conf.toDouble)
          println(Seq(name, hex(r.confidenceInterval(0)), hex(r.confidenceInterval(1)), hex(r.estimate)).mkString("\t"))
        case "metric" =>
          val nan = NaNStrategy.parse(nanStrategy)
          def transform(m: Metric): Metric = {
            val n = if (nan == NaNStrategy.Remove) Transforms.removeNaNs(m) else Transforms.replaceNaNs(m)
            if (OutlierStrategy.parse(outlierStrategy) == OutlierStrategy.Remove)
              Transforms.removeOutliers(n, new IQRDetector(outlierFactor.toDouble, reduceSensitivity = true))
            else n
          }
          val e = transform(Metric(name, experiment, "Canary"))
          val c = transform(Metric(name, control, "Baseline"))
          val classifier = new MannWhitneyClassifier(tolerance.toDouble, conf.toDouble,
            (allowedDecrease.toDouble, allowedIncrease.toDouble), (criticalDecrease.toDouble, criticalIncrease.toDouble), measure)
          RandomUtils.init(seed.toInt)
          val verdict =
            try {
              val r = classifier.classify(c, e, MetricDirection.parse(direction), nan, critical.toBoolean, mustHaveData.toBoolean)
              Seq(r.classification.toString, r.reason.getOrElse("-"), r.critical.toString, hex(r.deviation))
            } catch {
              case _: RuntimeException => Seq("Error", "Metric Classification Failed", "false", "-")
            }
          // The test statistics, where classify runs the test without noise.
          val tested = e.values.nonEmpty && c.values.nonEmpty &&
            !e.values.sorted.sameElements(c.values.sorted) &&
            e.values.union(c.values).distinct.length > 1 &&
            !(e.values.distinct.length == 1 && c.values.distinct.length == 1)
          val mw =
            if (!tested) Seq("-", "-", "-", "-")
            else try {
              val r = classifier.MannWhitneyUTest(e.values, c.values)
              Seq(hex(r.lowerConfidence), hex(r.upperConfidence), hex(r.estimate), hex(r.effectSize))
            } catch {
              case _: RuntimeException => Seq("-", "-", "-", "-")
            }
          println((Seq(name) ++ verdict ++ mw ++
            Seq(stats(DescriptiveStatistics.summary(e)), stats(DescriptiveStatistics.summary(c)))).mkString("\t"))
      }
    }
  }
}
