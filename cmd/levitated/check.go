package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/levitated/levitated/pkg/storage/integrity"
)

// runCheck is `levitated check --data-dir D`: it verifies every checksum of
// the store in D (pkg/storage/integrity) without changing anything, prints
// each finding on one line and a summary, and exits 1 if the store would
// not start, 0 otherwise (warnings included).
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("levitated check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "", "`directory` of the store to check (stop levitated first, or check a backup)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: levitated check --data-dir DIR\n\n"+
			"Verifies the checksum of every record of the MANIFEST and the write-ahead\n"+
			"logs and of every block of every table, then reads every key, without\n"+
			"changing anything. Exit code 0: the store starts (warnings are printed);\n"+
			"1: it does not, each problem is printed with its remedy; 2: usage.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "levitated check: --data-dir is required (and nothing else)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := integrity.Check(ctx, *dir)
	if err != nil {
		fmt.Fprintf(stderr, "levitated check: %v\n", err)
		return 1
	}
	for _, f := range r.Findings {
		fmt.Fprintln(stdout, f.Line())
	}
	fmt.Fprintln(stdout, r.Summary())
	if len(r.Problems()) > 0 {
		return 1
	}
	return 0
}
