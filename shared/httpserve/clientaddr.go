package httpserve

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are examined: a
// real chain is a handful of proxies, and a client can send thousands.
const maxForwardedHops = 64

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one address as a proxy writes it: bare, with a port, or
// bracketed IPv6. IPv4-mapped IPv6 is unmapped so both spellings count as one.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// peerAddr is the socket peer of the request (RemoteAddr without its port).
func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, ok := parseHop(host); ok {
		return a.String()
	}
	return host
}

// ForwardedClient returns the client's address. When the socket peer is a
// trusted proxy, it is the rightmost X-Forwarded-For entry (all header
// lines, in order) that is not itself in a trusted range: entries to the
// left of it were written by the client and prove nothing. If every entry is
// trusted, the leftmost is the client; an unreadable entry stops the walk at
// the last trusted hop, which is the nearest address a trusted proxy vouched
// for. An untrusted peer, or no trusted_proxies at all, means the peer.
func ForwardedClient(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r)
	if len(trusted) == 0 {
		return peer
	}
	pa, ok := parseHop(peer)
	if !ok || !trustedAddr(pa, trusted) {
		return peer
	}
	var hops []string
	for _, line := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(line, ",")...)
	}
	client := pa
	for i, seen := len(hops)-1, 0; i >= 0 && seen < maxForwardedHops; i, seen = i-1, seen+1 {
		if strings.TrimSpace(hops[i]) == "" {
			continue // "a,,b" or a trailing comma: nothing written there
		}
		a, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = a
		if !trustedAddr(a, trusted) {
			break
		}
	}
	return client.String()
}

type clientKey struct{}

// withClient stores the resolved client address for ClientAddr.
func withClient(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientKey{}, addr)
}

// ClientAddr is the request's client address as Middleware resolved it
// (server.trusted_proxies applied): what every abuse limit, the audit log
// and the request log use. Outside Middleware it is the socket peer.
func ClientAddr(r *http.Request) string {
	if a, ok := r.Context().Value(clientKey{}).(string); ok && a != "" {
		return a
	}
	return peerAddr(r)
}
