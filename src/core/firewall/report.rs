//! The counter report on the console: a line per interface every period,
//! and, when traffic moved since the last report, the drops by reason and
//! a line of flow and event counts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::net::{Counters, DropReason};

/// Wake-ups, for the report: the CPU's, which the kernel counted (its
/// interrupt handlers), and the devices' (notifications).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Woken by a NIC interrupt.
    pub nic: u64,
    /// Woken by the timer.
    pub timer: u64,
    /// Other vCPUs woken by the boot vCPU for a frame on their queues
    /// (their NIC interrupts reach the boot vCPU).
    pub relayed: u64,
    /// The NICs notified of new buffers, and batches they asked not to be.
    pub notifications: super::Notifications,
}

/// Flow-table occupancy, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flows {
    /// Flows tracked.
    pub tracked: usize,
    /// Table capacity.
    pub capacity: usize,
    /// Neighbour (ARP) table entries.
    pub neighbours: usize,
    /// Of those, awaiting resolution.
    pub neighbours_pending: usize,
}

/// The frames received and sent on all interfaces: the report's details
/// are printed only when this moved.
pub fn traffic(counters: &Counters) -> u64 {
    counters.interfaces.iter().map(|c| c.received.wrapping_add(c.sent)).fold(0, u64::wrapping_add)
}

/// The report's lines: one per interface in `names`, then, with
/// `detailed`, each non-zero drop reason per interface and the flow and
/// event line.
pub fn lines(names: &[String], counters: &Counters, flows: Flows, wakeups: Wakeups, detailed: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (name, c) in names.iter().zip(&counters.interfaces) {
        out.push(format!(
            "{name}: received {} forwarded out {} local {} dropped {} (down {}, bad length {}) sent {} not sent {}",
            c.received,
            c.forwarded_out,
            c.local,
            c.total_drops(),
            c.drop_count(DropReason::InterfaceDown),
            c.drop_count(DropReason::BadLength),
            c.sent,
            c.not_sent()
        ));
    }
    if !detailed {
        return out;
    }
    for (name, c) in names.iter().zip(&counters.interfaces) {
        for reason in DropReason::ALL {
            let n = c.drop_count(reason);
            if n > 0 {
                out.push(format!("{name}: dropped {n} {reason:?}"));
            }
        }
    }
    let e = &counters.events;
    out.push(format!(
        "flows {} of {}; neighbours {} ({} pending); ICMP errors sent {} (rate-limited {}); RSTs sent {}; \
         ARP requests {}; fragments held {} ({} bytes; datagrams evicted {}, timed out {}); \
         woken by NICs {} and by the timer {}; NICs notified {} times, {} not (they asked)",
        flows.tracked,
        flows.capacity,
        flows.neighbours,
        flows.neighbours_pending,
        e.icmp_errors_sent,
        e.icmp_errors_rate_limited,
        e.tcp_resets_sent,
        e.arp_requests_sent,
        e.fragments_held,
        e.fragment_bytes_held,
        e.fragment_evictions,
        e.fragment_timeouts,
        wakeups.nic,
        wakeups.timer,
        wakeups.notifications.sent,
        wakeups.notifications.suppressed
    ));
    out.push(format!(
        "defences: connections evicted early {}; ICMP errors not allowed {}; log lines suppressed {}",
        e.conntrack_early_drops, e.icmp_errors_suppressed, e.log_suppressed
    ));
    if e.nat_translations != 0 || e.nat_allocation_failures != 0 || e.masquerade_flushed != 0 {
        out.push(format!(
            "nat: {} translated connections; {} new connections without a free port; {} masqueraded connections forgotten with their address",
            e.nat_translations, e.nat_allocation_failures, e.masquerade_flushed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_line_per_interface_and_details_on_request() {
        let mut counters = Counters::new(2, 1);
        counters.count_received(0, 60);
        counters.count_drop(0, DropReason::Ipv4Checksum);
        counters.count_drop(0, DropReason::InterfaceDown);
        counters.count_transmit(0, 1, 60, Ok(()));
        counters.count_transmit(0, 1, 60, Err(DropReason::TransmitQueueFull));
        counters.events.icmp_errors_sent = 3;
        counters.events.conntrack_early_drops = 2;
        counters.events.log_suppressed = 1;
        let names = ["eth0".to_string(), "eth1".to_string()];
        let flows = Flows { tracked: 2, capacity: 64, neighbours: 5, neighbours_pending: 1 };
        let notifications = crate::firewall::Notifications { sent: 7, suppressed: 8 };
        let wakeups = Wakeups { nic: 5, timer: 6, relayed: 0, notifications };
        let short = lines(&names, &counters, flows, wakeups, false);
        assert_eq!(
            short,
            [
                "eth0: received 1 forwarded out 0 local 0 dropped 3 (down 1, bad length 0) sent 0 not sent 1",
                "eth1: received 0 forwarded out 0 local 0 dropped 0 (down 0, bad length 0) sent 1 not sent 0",
            ]
        );
        let long = lines(&names, &counters, flows, wakeups, true);
        assert_eq!(long.len(), 7);
        assert_eq!(long[6], "defences: connections evicted early 2; ICMP errors not allowed 0; log lines suppressed 1");
        assert_eq!(long[2], "eth0: dropped 1 Ipv4Checksum");
        assert_eq!(long[3], "eth0: dropped 1 TransmitQueueFull");
        assert_eq!(long[4], "eth0: dropped 1 InterfaceDown");
        assert!(long[5].starts_with("flows 2 of 64; neighbours 5 (1 pending); ICMP errors sent 3 (rate-limited 0)"));
        assert!(long[5].ends_with("woken by NICs 5 and by the timer 6; NICs notified 7 times, 8 not (they asked)"));
        assert_eq!(traffic(&counters), 2);
    }
}
