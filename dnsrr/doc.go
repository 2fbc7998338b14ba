// Package dnsrr is classic DNS round robin done well: an authoritative DNS
// server that answers one name with the addresses of a service's healthy
// members, rotated on every query. It is the alternative the smart client
// is measured against, offered as a real tool rather than a benchmark toy.
//
// The package owns three things, kept apart:
//
//   - Zone.Answer, the pure core: a query, an immutable View of addresses
//     and a turn number in, a reply out. No I/O, no clock, no goroutines.
//   - Monitor, the health runtime: it drives the same failure detector the
//     director uses (balance.Balancer's outlier ejection with backoff and
//     active probing before readmission) from periodic checks, and
//     publishes a new View whenever the healthy set may have changed.
//   - Handler and Server, the miekg/dns adapter: UDP and TCP on one
//     address, EDNS0, truncation over UDP.
//
// DNS answers carry addresses, not ports, so every member must listen on
// the same port; clients dial http://ZONE:PORT/.
package dnsrr
