package oserr

import (
	"errors"
	"strings"
	"testing"
)

func TestCapped(t *testing.T) {
	base := errors.New("glance: " + strings.Repeat("é", 1000))
	err := Capped(base)
	if !errors.Is(err, base) {
		t.Error("errors.Is does not see the wrapped error")
	}
	if len(err.Error()) > MaxText+40 || !strings.HasSuffix(err.Error(), "more bytes)") {
		t.Errorf("text not capped: %d bytes", len(err.Error()))
	}
	if !strings.HasPrefix(err.Error(), "glance: é") || strings.ContainsRune(err.Error(), '\uFFFD') {
		t.Error("text cut inside a character")
	}
	if short := errors.New("short"); Capped(short).Error() != "short" {
		t.Error("a short error changed")
	}
	if Capped(nil) != nil {
		t.Error("Capped(nil) is not nil")
	}
}
