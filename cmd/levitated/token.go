package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/tenant"
)

const tokenUsage = `Usage: levitated token <command> [flags]

Manages the API tokens in the data directory (the file tokens.json, which
holds only their SHA-256 hashes). Works whether or not levitated runs: a
running levitated on the same data directory picks changes up within a
second.

Commands:
  create --scope SCOPES [--tenant NAME] [--description TEXT] [--from-file FILE]
         make a token and print it on stdout, the only time it is shown;
         the tenant defaults to "anonymous", the tenant of everything sent
         without a token (on loopback, before the first token), so a first
         token keeps seeing that data;
         with --from-file, store the token in FILE ("-": stdin) instead,
         for tokens kept in a secret store (again with the same token,
         tenant and scopes: no change)
  list   print every token's id, tenant, scopes and state
  revoke ID
         refuse the token from now on

Scopes (comma-separated, or "all"): read, write (samples), events:write,
analysis, admin.

Flags of every command:
  --data-dir directory   the data directory of levitated (default "./data")
`

// runToken runs `levitated token ...` and returns the exit code.
func runToken(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, tokenUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("levitated token "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage) }
	dataDir := fs.String("data-dir", "./data", "the data directory of levitated")
	var tenantName, scopes, description, fromFile string
	if cmd == "create" {
		fs.StringVar(&tenantName, "tenant", tenant.Default, "tenant the token acts for (the default is the tenant of data sent without a token)")
		fs.StringVar(&scopes, "scope", "", "comma-separated scopes")
		fs.StringVar(&description, "description", "", "what the token is for")
		fs.StringVar(&fromFile, "from-file", "", "store the token in this file (- for stdin) instead of a new one")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintf(stderr, "levitated token %s: --data-dir is empty: give levitated's data directory (the default is ./data)\n", cmd)
		return 2
	}
	store := auth.NewStore(filepath.Join(*dataDir, auth.TokenFileName))
	switch cmd {
	case "create":
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "levitated token create: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		if err := tenant.Validate(tenantName); err != nil {
			fmt.Fprintf(stderr, "levitated token create: --tenant: %v\n", err)
			return 2
		}
		first, err := noActiveToken(store)
		if err != nil {
			fmt.Fprintf(stderr, "levitated token create: %v\n", err)
			return 1
		}
		sc, err := auth.ParseScopes(scopes)
		if err != nil {
			fmt.Fprintf(stderr, "levitated token create: --scope: %v\n", err)
			return 2
		}
		if fromFile != "" {
			return importToken(store, fromFile, tenantName, sc, description, stdin, stdout, stderr)
		}
		tok, rec, err := store.Create(tenantName, sc, description, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "levitated token create: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "Created token %s for tenant %q with scopes %s in %s.\n"+
			"It is printed below and never again; only its SHA-256 is kept.\n", rec.ID, rec.Tenant, joinScopes(rec.Scopes), store.Path())
		if first {
			fmt.Fprint(stderr, firstTokenNote(rec.Tenant, *dataDir))
		}
		fmt.Fprintln(stdout, tok)
		return 0
	case "list":
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "levitated token list: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		toks, err := store.List()
		if err != nil {
			fmt.Fprintf(stderr, "levitated token list: %v\n", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tSCOPES\tCREATED\tSTATE\tDESCRIPTION")
		for _, t := range toks {
			state := "active"
			if t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Tenant, joinScopes(t.Scopes), t.CreatedAt.Format(time.RFC3339), state, t.Description)
		}
		_ = tw.Flush()
		return 0
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "levitated token revoke: give one token id (see levitated token list)")
			return 2
		}
		rec, err := store.Revoke(fs.Arg(0), time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "levitated token revoke: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Revoked token %s of tenant %q (at %s).\n", rec.ID, rec.Tenant, rec.RevokedAt.Format(time.RFC3339))
		return 0
	default:
		fmt.Fprintf(stderr, "levitated token: unknown command %q\n\n%s", cmd, tokenUsage)
		return 2
	}
}

// noActiveToken reports whether the store has no unrevoked token: the next
// one turns authentication on for a server that had none.
func noActiveToken(store *auth.Store) (bool, error) {
	toks, err := store.List()
	if err != nil {
		return false, err
	}
	for _, t := range toks {
		if t.RevokedAt == nil {
			return false, nil
		}
	}
	return true, nil
}

// firstTokenNote says what the first token changes: from now on every
// request needs a token, and data sent before it is in tenant "anonymous".
func firstTokenNote(tenantName, dataDir string) string {
	note := "This is the first token: from now on every request needs one (Authorization: Bearer …), on loopback too.\n"
	if tenantName == tenant.Default {
		return note + fmt.Sprintf("It acts for tenant %q, where everything sent without a token is, so it sees that data.\n", tenant.Default)
	}
	return note + fmt.Sprintf("Data sent without a token is in tenant %q, which this token (tenant %q) does not see.\n"+
		"To read it, create a token for that tenant: levitated token create --data-dir %s --scope read\n", tenant.Default, tenantName, dataDir)
}

func joinScopes(sc []auth.Scope) string {
	s := make([]string, len(sc))
	for i, x := range sc {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

// importToken stores the token read from file ("-": stdin).
func importToken(store *auth.Store, file, tenantName string, sc []auth.Scope, description string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 4096))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		fmt.Fprintf(stderr, "levitated token create: --from-file: %v\n", err)
		return 1
	}
	rec, created, err := store.Import(strings.TrimSpace(string(b)), tenantName, sc, description, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "levitated token create: %v\n", err)
		return 1
	}
	if created {
		fmt.Fprintf(stdout, "Stored token %s for tenant %q with scopes %s in %s.\n", rec.ID, rec.Tenant, joinScopes(rec.Scopes), store.Path())
	} else {
		fmt.Fprintf(stdout, "Token %s of tenant %q is already stored in %s.\n", rec.ID, rec.Tenant, store.Path())
	}
	return 0
}
