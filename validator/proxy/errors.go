package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// refusal is an answer the gate gives instead of Nova, shaped as Nova's own
// faults: {"<name>": {"code": <status>, "message": "<text>"}}.
type refusal struct {
	status int
	msg    string
	// reason is the metrics/audit label of the refusal.
	reason string
}

func (e *refusal) Error() string { return e.msg }

func refuse(status int, reason, format string, a ...any) *refusal {
	return &refusal{status: status, reason: reason, msg: fmt.Sprintf(format, a...)}
}

// faultName is Nova's name for an error status (nova/api/openstack/wsgi.py Fault).
func faultName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "badRequest"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "itemNotFound"
	case http.StatusMethodNotAllowed:
		return "badMethod"
	case http.StatusConflict:
		return "conflictingRequest"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "overLimit"
	case http.StatusUnsupportedMediaType:
		return "badMediaType"
	case http.StatusNotImplemented:
		return "notImplemented"
	case http.StatusServiceUnavailable:
		return "serviceUnavailable"
	default:
		return "computeFault"
	}
}

// writeFault writes a Nova-shaped error with the request id headers Nova sends.
func writeFault(w http.ResponseWriter, reqID string, status int, msg string) {
	body, _ := json.Marshal(map[string]any{faultName(status): map[string]any{"code": status, "message": msg}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Openstack-Request-Id", reqID)
	h.Set("X-Compute-Request-Id", reqID)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
