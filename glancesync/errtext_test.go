package glancesync

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// TestGlanceErrorTextCapped: a Glance answer's body (here a load
// balancer's 64 KiB page) is cut in the error text the sync reports and
// logs, while errors.Is and errors.As still see the error whole.
func TestGlanceErrorTextCapped(t *testing.T) {
	page := "<html>" + strings.Repeat("é", 32<<10) + "</html>"
	for _, c := range []struct {
		name   string
		status int
		wrap   func(error) error
		is     error
	}{
		{name: "ok 502", status: http.StatusBadGateway, wrap: func(err error) error { return mapErr("get image x", err) }},
		{name: "ok 404", status: http.StatusNotFound, wrap: func(err error) error { return mapErr("get image x", err) }, is: ErrNotFound},
		{name: "ok 409", status: http.StatusConflict, wrap: func(err error) error { return mapErr("get image x", err) }, is: ErrConflict},
		{name: "ok 413", status: http.StatusRequestEntityTooLarge, wrap: func(err error) error { return mapLimitErr("upload image x", "data", err) }, is: ErrOverQuota},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := gophercloud.ErrUnexpectedResponseCode{Method: "GET", URL: "http://glance/v2/images/x", Expected: []int{200}, Actual: c.status, Body: []byte(page)}
			err := c.wrap(orig)
			text := err.Error()
			if len(text) > maxErrText+1024 {
				t.Fatalf("error text of %d bytes", len(text))
			}
			if !strings.Contains(text, "bytes more)") || !strings.Contains(text, "x") {
				t.Fatalf("error text does not say it was cut: %.200q", text)
			}
			if strings.ToValidUTF8(text, "?") != text {
				t.Fatal("cut inside a character")
			}
			var ue gophercloud.ErrUnexpectedResponseCode
			if !errors.As(err, &ue) || ue.Actual != c.status || len(ue.Body) != len(page) {
				t.Fatalf("errors.As lost the answer: %v", ue.Actual)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("errors.Is(%v) false", c.is)
			}
		})
	}
	short := gophercloud.ErrUnexpectedResponseCode{Method: "GET", URL: "http://glance/v2/images/x", Expected: []int{200}, Actual: 409, Body: []byte("Image x has data on staging")}
	if text := mapErr("stage image x", short).Error(); !strings.Contains(text, "Image x has data on staging") || strings.Contains(text, "bytes more)") {
		t.Fatalf("a short answer's text was cut: %q", text)
	}
	if got := capText("short", 10); got != "short" {
		t.Fatalf("capText(short) = %q", got)
	}
}
