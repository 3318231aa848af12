// Package proto holds the protos of levitated's APIs; its test checks that
// the committed generated code is what gen.sh generates.
package proto

import (
	"os/exec"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the code into a temporary directory
// with the pinned plugins and fails if it differs from what is committed.
// It needs protoc (Debian: apt-get install -y protobuf-compiler).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not installed (apt-get install -y protobuf-compiler); gen.sh --check not run")
	}
	out, err := exec.Command("bash", "gen.sh", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("gen.sh --check: %v\n%s", err, out)
	}
}
