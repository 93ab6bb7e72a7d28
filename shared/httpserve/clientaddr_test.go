package httpserve_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/httpserve"
)

var testTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("fd00::/8")}

func TestForwardedClient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"no proxies configured: the peer", "127.0.0.1:1", []string{"1.2.3.4"}, nil, "127.0.0.1"},
		{"untrusted peer: its header is ignored", "198.51.100.9:1", []string{"1.2.3.4"}, testTrusted, "198.51.100.9"},
		{"trusted peer, one hop", "127.0.0.1:1", []string{"203.0.113.5"}, testTrusted, "203.0.113.5"},
		{"spoofed left entries are ignored", "127.0.0.1:1", []string{"6.6.6.6, 203.0.113.5"}, testTrusted, "203.0.113.5"},
		{"trusted hops are skipped", "127.0.0.1:1", []string{"203.0.113.5, 10.1.2.3, 10.9.9.9"}, testTrusted, "203.0.113.5"},
		{"several header lines, in order", "10.0.0.2:1", []string{"6.6.6.6", "203.0.113.5, 10.1.1.1"}, testTrusted, "203.0.113.5"},
		{"all trusted: the leftmost", "127.0.0.1:1", []string{"10.0.0.7, 10.0.0.8"}, testTrusted, "10.0.0.7"},
		{"no header: the peer", "10.0.0.2:1", nil, testTrusted, "10.0.0.2"},
		{"garbage stops at the last trusted hop", "127.0.0.1:1", []string{"203.0.113.5, bogus, 10.0.0.9"}, testTrusted, "10.0.0.9"},
		{"ports and brackets", "[fd00::1]:1", []string{"[2001:db8::7]:443, 10.0.0.1:80"}, testTrusted, "2001:db8::7"},
		{"mapped IPv4 unmapped", "[::ffff:127.0.0.1]:1", []string{"::ffff:203.0.113.5"}, testTrusted, "203.0.113.5"},
		{"empty entries skipped", "127.0.0.1:1", []string{"203.0.113.5,, "}, testTrusted, "203.0.113.5"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := httpserve.ForwardedClient(r, c.trusted); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// FuzzForwardedClient: whatever a client writes in X-Forwarded-For, the
// answer is an address, the peer when the peer is not trusted, and
// otherwise the peer or one of the forwarded entries; an untrusted entry
// to the right of the answer never exists.
func FuzzForwardedClient(f *testing.F) {
	f.Add("127.0.0.1:9", "203.0.113.5, 10.0.0.1", "")
	f.Add("10.0.0.1:9", "6.6.6.6", "[2001:db8::1]:80,bogus")
	f.Add("198.51.100.1:9", "1.1.1.1", "")
	f.Add("[fd00::2]:9", ",,,", "::ffff:10.0.0.1")
	f.Fuzz(func(t *testing.T, peer, line1, line2 string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header.Add("X-Forwarded-For", line1)
		if line2 != "" {
			r.Header.Add("X-Forwarded-For", line2)
		}
		got := httpserve.ForwardedClient(r, testTrusted)
		untrusted := httpserve.ForwardedClient(r, nil)
		pa, err := netip.ParseAddr(untrusted)
		if err != nil || !trusted(pa) {
			if got != untrusted {
				t.Fatalf("untrusted peer %q: got %q", peer, got)
			}
			return
		}
		ga, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("trusted peer %q: %q is not an address", peer, got)
		}
		if got == untrusted {
			return
		}
		hops := strings.Split(line1+","+line2, ",")
		found := -1
		for i, h := range hops {
			if a, ok := hop(h); ok && a == ga {
				found = i
			}
		}
		if found < 0 {
			t.Fatalf("%q is neither the peer nor a forwarded entry of %q", got, hops)
		}
		for _, h := range hops[found+1:] {
			if a, ok := hop(h); ok && !trusted(a) {
				t.Fatalf("%q chosen although untrusted %q is to its right", got, h)
			}
		}
	})
}

func trusted(a netip.Addr) bool {
	for _, p := range testTrusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func hop(s string) (netip.Addr, bool) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = strings.TrimSpace(s)
	a, err := netip.ParseAddr(httpserve.ForwardedClient(r, nil))
	if err != nil {
		if ap, err := netip.ParseAddrPort(strings.TrimSpace(s)); err == nil {
			return ap.Addr().Unmap(), true
		}
		return netip.Addr{}, false
	}
	return a, true
}
