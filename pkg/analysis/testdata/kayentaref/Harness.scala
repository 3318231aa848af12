// Harness runs Kayenta's own judge code (NetflixACAJudge's per-metric steps:
// NaN handling, IQR outlier removal, DescriptiveStatistics.summary and
// MannWhitneyClassifier) over the cases in input.txt and prints every
// result as exact hexadecimal doubles, for kayentaref_test.go to compare bit
// for bit. It is levitated's code; run.sh compiles it against Kayenta's
// sources, which are not copied into this repository.
//
// Input, one case per line, tab-separated:
//   name kind conf tolerance direction nanStrategy outlierStrategy outlierFactor
//   critical mustHaveData measure allowedIncrease allowedDecrease criticalIncrease
//   criticalDecrease seed control experiment
// kind is "mw" (MannWhitney.mannWhitneyUTest(experiment, control, conf) only) or
// "metric" (the judge's classifyMetric steps). Values are comma-separated.
package levitated.kayentaref

import com.netflix.kayenta.judge.Metric
import com.netflix.kayenta.judge.classifiers.metric._
import com.netflix.kayenta.judge.detectors.IQRDetector
import com.netflix.kayenta.judge.preprocessing.Transforms
import com.netflix.kayenta.judge.stats.{DescriptiveStatistics, MetricStatistics}
import com.netflix.kayenta.judge.utils.RandomUtils
import com.netflix.kayenta.mannwhitney.MannWhitney

object Harness {
  def hex(d: Double): String = java.lang.Double.toHexString(d)

  def values(s: String): Array[Double] =
    if (s == "-") Array[Double]() else s.split(",").map(java.lang.Double.parseDouble)

  def stats(s: MetricStatistics): String =
    Seq(hex(s.min), hex(s.max), hex(s.mean), hex(s.std), s.count.toString).mkString(",")

  def main(args: Array[String]): Unit = {
    for (line <- scala.io.Source.fromFile(args(0)).getLines() if line.nonEmpty && !line.startsWith("#")) {
      val f = line.split("\t", -1)
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
