// Ref prints reference values from the Java libraries Kayenta builds on, for
// the bit-exact checks in pkg/analysis (TestZQuantMatchesCommonsMath,
// TestJavaRandomMatchesJDK). It contains no Kayenta code.
//
// Run (Debian: apt-get install libcommons-math3-java; any JDK 17+):
//
//	javac -cp /usr/share/java/commons-math3.jar Ref.java
//	java -cp /usr/share/java/commons-math3.jar:. Ref
import org.apache.commons.math3.distribution.NormalDistribution;

public class Ref {
  public static void main(String[] args) {
    NormalDistribution n = new NormalDistribution(0, 1);
    for (double conf : new double[] {0.98, 0.95, 0.90, 0.99, 0.8}) {
      double z = n.inverseCumulativeProbability((1.0 - conf) / 2);
      System.out.println("zQuant " + conf + " " + Double.toHexString(z) + " " + z);
    }
    for (long seed : new long[] {12345L, 123456789L, 0x6b617965L}) {
      java.util.Random r = new java.util.Random(seed);
      StringBuilder sb = new StringBuilder("nextGaussian seed=" + seed);
      for (int i = 0; i < 6; i++) {
        sb.append(' ').append(Double.toHexString(r.nextGaussian()));
      }
      System.out.println(sb);
    }
  }
}
