package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runBackup is `levitated backup`: it asks a running levitated for a
// snapshot (POST /api/v1/admin/snapshot: a consistent Pebble checkpoint
// under its <data-dir>/snapshots) and, with --to, moves it there (the
// server must then be on this machine). Exit 0 and the directory printed,
// or 1 and why.
func runBackup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("levitated backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:9090", "base `URL` of the running levitated")
	tokenFile := fs.String("token-file", "", "`file` holding a levitated token with the admin scope (needed when levitated requires authentication)")
	to := fs.String("to", "", "`directory` (must not exist) to move the snapshot to; empty: leave it under the server's <data-dir>/snapshots")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long the snapshot may take")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: levitated backup [--url URL] [--token-file FILE] [--to DIR]\n\n"+
			"Backs up a running levitated: a consistent copy of its store (samples and\n"+
			"events of every tenant, and its token file) that holds every write\n"+
			"acknowledged before the backup started. Restore: stop levitated, replace\n"+
			"its --data-dir with the copy (or point --data-dir at it), start it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "levitated backup: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *to != "" {
		if _, err := os.Stat(*to); err == nil {
			fmt.Fprintf(stderr, "levitated backup: --to %s exists; give a new directory\n", *to)
			return 2
		}
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "levitated backup: --token-file: %v\n", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	dir, err := requestSnapshot(ctx, strings.TrimRight(*url, "/"), token)
	if err != nil {
		fmt.Fprintf(stderr, "levitated backup: %v\n", err)
		return 1
	}
	if *to != "" {
		if err := moveDir(dir, *to); err != nil {
			fmt.Fprintf(stderr, "levitated backup: the snapshot is in %s on the server's machine; moving it to --to: %v\n", dir, err)
			return 1
		}
		dir = *to
	}
	fmt.Fprintln(stdout, dir)
	return 0
}

func requestSnapshot(ctx context.Context, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/admin/snapshot", nil)
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Name string `json:"name"`
			Dir  string `json:"dir"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if r.Error != "" {
			msg = r.Error
		}
		return "", fmt.Errorf("snapshot refused: %s: %s", resp.Status, msg)
	}
	return r.Data.Dir, nil
}

// moveDir renames src to dst, or copies it and removes src when dst is on
// another filesystem.
func moveDir(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := copyTree(src, dst); err != nil {
		return err
	}
	return os.RemoveAll(src)
}

func copyTree(src, dst string) error {
	if err := os.Mkdir(dst, 0o750); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", filepath.Join(src, e.Name()))
		}
		if err := copyRegular(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	d, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func copyRegular(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
