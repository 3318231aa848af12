// Kayenta declares Metric in NetflixACAJudge.scala, which needs Spring; this
// is the same case class, so run.sh can leave that file out.
package com.netflix.kayenta.judge

case class Metric(name: String, values: Array[Double], label: String)
