package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/webhook"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"https://hooks.example.com/x", "http://203.0.113.9:8080/cb", "https://[2001:db8::1]/"} {
		if err := webhook.ValidateURL(u, false); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com", "/relative", "http://127.0.0.1/", "http://10.1.2.3/", "http://192.168.0.1",
		"http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://localhost:80/", "http://user:pw@example.com/",
		"http://100.64.0.1/", "http://0.0.0.0/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "https://" + strings.Repeat("a", 3000)} {
		if err := webhook.ValidateURL(u, false); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if err := webhook.ValidateURL("http://127.0.0.1:9/", true); err != nil {
		t.Errorf("allow_private must allow loopback: %v", err)
	}
}

func TestPublic(t *testing.T) {
	t.Parallel()
	if !webhook.Public(netip.MustParseAddr("8.8.8.8")) || webhook.Public(netip.MustParseAddr("172.16.5.4")) {
		t.Fatal("Public misclassifies")
	}
}

func TestDialRefusesPrivateAfterResolution(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// "localhost" passes no literal-IP check, but resolves to loopback: the dialer refuses it.
	target := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	err := webhook.Deliver(context.Background(), webhook.Client(false, time.Second), []byte("s"), target, "ev1", []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "non-public") {
		t.Fatalf("delivery to a loopback name: %v", err)
	}
}

func TestSignedDelivery(t *testing.T) {
	t.Parallel()
	secret := []byte("whsec")
	got := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, r.ContentLength)
		r.Body.Read(b) //nolint:errcheck
		got <- webhook.Verify(secret, r.Header.Get(webhook.Header), b, time.Now(), time.Minute)
	}))
	defer srv.Close()
	if err := webhook.Deliver(context.Background(), webhook.Client(true, time.Second), secret, srv.URL, "ev1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("receiver could not verify: %v", err)
	}
	sig := webhook.Sign(secret, time.Now().Add(-time.Hour), []byte("x"))
	if webhook.Verify(secret, sig, []byte("x"), time.Now(), 5*time.Minute) == nil {
		t.Fatal("stale signature accepted")
	}
	if webhook.Verify([]byte("other"), webhook.Sign(secret, time.Now(), []byte("x")), []byte("x"), time.Now(), time.Minute) == nil {
		t.Fatal("wrong secret accepted")
	}
}
