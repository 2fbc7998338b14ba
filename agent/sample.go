package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	psnet "github.com/shirou/gopsutil/v4/net"
)

// Sampler takes one reading of the machine. Sample returns by the time ctx
// ends. A reading that failed is named in Sample.Errs, never returned as an
// error, so that one broken source does not hide the others. Sample is
// called from one goroutine at a time and does not set Sample.Time: the
// caller stamps it from its clock.
type Sampler interface {
	Sample(ctx context.Context) Sample
}

// AllIfaces is the interface name under which Host sums every interface.
const AllIfaces = "all"

// Host is the Sampler of the machine the agent runs on: through gopsutil
// the 1-minute load average, CPU times summed over all CPUs and the byte
// counters of interface Iface, and from the kernel the number of
// established TCP connections (IPv4 and IPv6) whose local port is Port.
//
// Connections are counted with a netlink sock_diag dump filtered by state
// and port in the kernel, so its cost grows with the connections counted,
// not with every socket and process on the machine; where netlink is
// refused, from /proc/net/tcp and tcp6 (Sample.ConnsFrom says which; see
// BenchmarkConnCount). A Host keeps that choice and a receive buffer
// between samples, so use it through a pointer.
type Host struct {
	// Port is the target's TCP port. Connections are counted by local
	// port alone, whatever the local address, so a server listening on
	// every address has all its connections counted.
	Port int
	// Iface is the interface whose bytes are counted; "" or AllIfaces
	// sums every interface, loopback included. IfaceFor picks it.
	Iface string

	conns connCounter
}

var _ Sampler = (*Host)(nil)

// Sample implements Sampler.
func (h *Host) Sample(ctx context.Context) Sample {
	s := Sample{Errs: map[string]string{}}
	if a, err := load.AvgWithContext(ctx); err != nil {
		s.Errs[ErrKeyLoad1] = err.Error()
	} else {
		s.Load1 = a.Load1
	}
	if n, err := cpu.CountsWithContext(ctx, true); err == nil {
		s.NumCPU = n
	}
	if t, err := cpu.TimesWithContext(ctx, false); err != nil || len(t) != 1 {
		s.Errs[ErrKeyCPU] = fmt.Sprintf("CPU times: %d readings, %v", len(t), err)
	} else {
		s.CPU = cpuTimes(t[0])
	}
	if n, from, err := h.conns.count(ctx, h.Port); err != nil {
		s.Errs[ErrKeyConns] = err.Error()
	} else {
		s.Conns, s.ConnsFrom = n, from
	}
	iface := h.Iface
	if iface == "" {
		iface = AllIfaces
	}
	if b, err := ifaceBytes(ctx, iface); err != nil {
		s.Errs[ErrKeyIface] = err.Error()
		s.Iface.Name = iface
	} else {
		s.Iface = b
	}
	if len(s.Errs) == 0 {
		s.Errs = nil
	}
	return s
}

// cpuTimes sums a gopsutil reading the way gopsutil's own cpu.Percent does:
// guest time is already counted in user time, and iowait is idle.
func cpuTimes(t cpu.TimesStat) CPUTimes {
	total := t.Total() - t.Guest - t.GuestNice
	return CPUTimes{Total: total, Busy: total - t.Idle - t.Iowait}
}

func ifaceBytes(ctx context.Context, name string) (IfaceBytes, error) {
	all, err := psnet.IOCountersWithContext(ctx, name != AllIfaces)
	if err != nil {
		return IfaceBytes{}, err
	}
	for _, c := range all {
		if c.Name == name || name == AllIfaces && len(all) == 1 {
			return IfaceBytes{Name: name, Rx: c.BytesRecv, Tx: c.BytesSent}, nil
		}
	}
	return IfaceBytes{}, fmt.Errorf("interface %q not found", name)
}

// IfaceFor returns the name of the local interface that has address ip,
// or AllIfaces when ip is unspecified (0.0.0.0, ::) or on no interface.
func IfaceFor(ip netip.Addr) string {
	if !ip.IsValid() || ip.IsUnspecified() {
		return AllIfaces
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return AllIfaces
	}
	ip = ip.Unmap()
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil && pfx.Addr().Unmap() == ip {
				return ifc.Name
			}
			// Loopback has the whole 127/8, not only the address assigned.
			if ip.IsLoopback() && ifc.Flags&net.FlagLoopback != 0 {
				return ifc.Name
			}
		}
	}
	return AllIfaces
}
