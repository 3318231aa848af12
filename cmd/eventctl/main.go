// Command eventctl sends change events to levitated and reads them back.
//
//	eventctl start NAME [--attr k=v]...       open a window (prints the event id)
//	eventctl stop NAME [--attr k=v]...        close the matching window
//	eventctl run NAME [flags] -- COMMAND...   start, run COMMAND, stop with its
//	                                          exit_code and duration_seconds,
//	                                          exit with its status
//	eventctl list [--name N] [--match M]...   list events
//	eventctl get ID                           show one event
//	eventctl tail [--name N] [--match M]...   print new events as they arrive
//	eventctl impact ID                        the judgement of a change
//	eventctl gate --service S [flags]         the deployment gate: exit 0 to
//	                                          promote, 1 to block
//
// The server is --server or $LEVITATED_SERVER (default
// http://127.0.0.1:9090), the token --token or $LEVITATED_TOKEN. Creates
// carry an idempotency key, so a retried start is never stored twice.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is what run needs from the process, so tests can run it in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}
