package eventapi

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// childEnv names the data directory when this test binary runs as the
// event server child of TestKill9KeepsAcknowledgedEvents.
const childEnv = "LEVITATED_EVENTS_KILL_CHILD_DIR"

// TestKillChild is not a test: it is the child process. It serves the event
// service over gRPC on 127.0.0.1, prints "ADDR <addr>" and runs until killed.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestKill9KeepsAcknowledgedEvents")
	}
	db := storagetest.Open(t, dir)
	store := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{})
	svc := NewEventService(store, tenant.IDFunc(func(context.Context, string) (uint32, error) { return 1, nil }), EventServiceOptions{})
	gs := grpc.NewServer()
	levitatedv1.RegisterEventServiceServer(gs, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", ln.Addr().String())
	_ = gs.Serve(ln)
}

func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, addr
		}
	}
	t.Fatalf("child exited without an address")
	return nil, ""
}

// TestKill9KeepsAcknowledgedEvents runs the event service in a child
// process, sends events from 16 clients, kills the child with SIGKILL while
// they are in flight, restarts it on the same directory and checks that
// every acknowledged event is there.
func TestKill9KeepsAcknowledgedEvents(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	child, addr := startChild(t, dir)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	client := levitatedv1.NewEventServiceClient(conn)

	var mu sync.Mutex
	acked := map[string]*levitatedv1.Event{}
	var wg sync.WaitGroup
	b := time.Now().Add(-time.Minute)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				resp, err := client.CreateEvent(context.Background(), &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
					Name: "deploy", State: "start", Timestamp: timestamppb.New(b.Add(time.Duration(i) * time.Millisecond)),
					Attributes:     map[string]string{"worker": fmt.Sprint(w), "i": fmt.Sprint(i)},
					IdempotencyKey: fmt.Sprintf("w%d-%d", w, i),
				}})
				if err != nil {
					return // the child is dead
				}
				mu.Lock()
				acked[resp.Event.Id] = resp.Event
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	wg.Wait()
	require.NoError(t, conn.Close())
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(acked), 300)

	child2, addr2 := startChild(t, dir)
	defer func() {
		_ = child2.Process.Signal(syscall.SIGKILL)
		_ = child2.Wait()
	}()
	conn2, err := grpc.NewClient(addr2, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn2.Close()
	client2 := levitatedv1.NewEventServiceClient(conn2)
	for id, want := range acked {
		got, err := client2.GetEvent(context.Background(), &levitatedv1.GetEventRequest{Id: id})
		require.NoError(t, err, "acknowledged event %s lost", id)
		require.Equal(t, want.Attributes, got.Event.Attributes)
		require.True(t, want.Timestamp.AsTime().Equal(got.Event.Timestamp.AsTime()))
	}
}
