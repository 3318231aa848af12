package eventapi

import (
	"net/http"
	"strings"

	"github.com/levitated/levitated/pkg/events"
)

// setWarnings adds one Warning header (RFC 9111 §5.5 shape, code 299, as
// Kubernetes' API server sends them) per warning of the stored events, and
// returns the warnings in order. Every event-write path calls it before the
// status is written, so curl -i and any HTTP client see them.
func setWarnings(w http.ResponseWriter, evs []events.Event) []string {
	var all []string
	for i := range evs {
		for _, msg := range evs[i].Warnings {
			w.Header().Add("Warning", `299 levitated "`+quoteWarning(msg)+`"`)
			all = append(all, msg)
		}
	}
	return all
}

var warningEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", " ", "\n", " ")

func quoteWarning(msg string) string { return warningEscaper.Replace(msg) }
