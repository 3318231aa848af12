// A stand-in for kayenta-core's Lombok-built CanaryAnalysisResult with the
// four getters WeightedSumScorer reads, so run.sh can compile the scorer
// without kayenta-core. levitated's code.
package com.netflix.kayenta.canary.results;

import java.util.List;

public class CanaryAnalysisResult {
  private final String classification;
  private final String classificationReason;
  private final List<String> groups;
  private final boolean critical;

  public CanaryAnalysisResult(String classification, String classificationReason, List<String> groups, boolean critical) {
    this.classification = classification;
    this.classificationReason = classificationReason;
    this.groups = groups;
    this.critical = critical;
  }

  public String getClassification() { return classification; }
  public String getClassificationReason() { return classificationReason; }
  public List<String> getGroups() { return groups; }
  public boolean isCritical() { return critical; }
}
