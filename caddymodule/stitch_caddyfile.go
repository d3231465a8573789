package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tracingproxy/tracingproxy/stitch"
)

// parseStitch reads: stitch [<method...>] { methods <method...>
// request_id_header <name> max_ids <n> id_ttl <duration> max_inflight <n> }
func parseStitch(d *caddyfile.Dispenser) (*Stitch, error) {
	s := new(Stitch)
	s.Methods = d.RemainingArgs()
	for d.NextBlock(1) {
		opt := d.Val()
		var err error
		switch opt {
		case "methods":
			if s.Methods = d.RemainingArgs(); len(s.Methods) == 0 {
				return nil, d.Errf("stitch methods needs at least one of %s", stitch.AllowedMethods)
			}
		case "request_id_header":
			err = oneArg(d, &s.RequestIDHeader)
		case "max_ids":
			err = intArg(d, &s.MaxIDs)
		case "max_inflight":
			err = intArg(d, &s.MaxInflight)
		case "id_ttl":
			err = durationArg(d, &s.IDTTL)
		default:
			err = d.Errf("unknown stitch option %q (allowed: methods, request_id_header, max_ids, id_ttl, max_inflight)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, _, err := s.build(); err != nil {
		return nil, d.Err(err.Error())
	}
	return s, nil
}

// parseEgress reads: egress { allow_clients <addr-or-cidr...> forward_proxy
// allow_destinations <dest...> }
func parseEgress(d *caddyfile.Dispenser) (*Egress, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	e := new(Egress)
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "allow_clients":
			if e.AllowClients = d.RemainingArgs(); len(e.AllowClients) == 0 {
				return nil, d.Errf("egress allow_clients needs addresses, CIDRs, loopback, private_ranges or all")
			}
			if _, err := parseAllow("egress allow_clients", e.AllowClients); err != nil {
				return nil, d.Err(err.Error())
			}
		case "forward_proxy":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			e.ForwardProxy = true
		case "allow_destinations":
			if e.AllowDestinations = d.RemainingArgs(); len(e.AllowDestinations) == 0 {
				return nil, d.Errf("egress allow_destinations needs host[:port], *.domain[:port], IP addresses or CIDRs")
			}
			if _, err := parseDestinations(e.AllowDestinations); err != nil {
				return nil, d.Err(err.Error())
			}
		default:
			return nil, d.Errf("unknown egress option %q (allowed: allow_clients, forward_proxy, allow_destinations)", opt)
		}
	}
	return e, nil
}
