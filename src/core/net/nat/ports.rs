//! Choosing the source port (or ICMP id) of a new translation so that its
//! reply tuple is not in use, as Linux's `nf_nat_l4proto_unique_tuple`:
//! the original port when it is free and in range (unless told to
//! randomise), else a pseudo-random start and a bounded linear probe.
//! Exhaustion is an answer (`None`, counted by the caller), never a port
//! shared by two connections.

/// Ports probed before giving up: Linux's first round tries at most 128
/// (`attempts` in `nf_nat_l4proto_unique_tuple`), which keeps the cost of
/// a new connection bounded when a range is nearly full.
pub const MAX_PORT_TRIES: u32 = 128;

/// How a port is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPolicy {
    /// Keep the original port when it is in range and free (Linux's default).
    Preserve,
    /// Always start at a pseudo-random port (`--random`, `--random-fully`).
    Random,
}

/// A port in the inclusive `range` for a connection whose original port is
/// `original`, such that `in_use(port)` is false; `seed` is a per-connection
/// pseudo-random value (a hash of its tuple and a boot secret). `None` when
/// `MAX_PORT_TRIES` ports (or the whole range, if smaller) are all taken.
pub fn allocate_port(
    original: u16,
    (low, high): (u16, u16),
    policy: PortPolicy,
    seed: u32,
    mut in_use: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let (low, high) = (low.min(high), low.max(high));
    let size = u32::from(high - low) + 1;
    if policy == PortPolicy::Preserve && (low..=high).contains(&original) && !in_use(original) {
        return Some(original);
    }
    let start = seed % size;
    (0..size.min(MAX_PORT_TRIES)).map(|step| low + ((start + step) % size) as u16).find(|&port| !in_use(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_original_port_when_it_can() {
        assert_eq!(allocate_port(40000, (1024, 65535), PortPolicy::Preserve, 7, |_| false), Some(40000));
        // Out of range, or taken: another one from the range.
        let other = allocate_port(80, (1024, 1100), PortPolicy::Preserve, 7, |_| false).unwrap();
        assert!((1024..=1100).contains(&other));
        let taken = allocate_port(40000, (1024, 65535), PortPolicy::Preserve, 7, |p| p == 40000).unwrap();
        assert_ne!(taken, 40000);
        // Random never prefers the original.
        assert_eq!(allocate_port(1030, (1024, 1100), PortPolicy::Random, 0, |_| false), Some(1024));
    }

    #[test]
    fn never_hands_out_a_port_in_use_and_says_when_none_is_left() {
        let mut used = std::collections::HashSet::new();
        for n in 0..11u32 {
            let port = allocate_port(5000, (5000, 5010), PortPolicy::Preserve, n * 7919, |p| used.contains(&p));
            assert!(used.insert(port.unwrap()), "port {port:?} handed out twice");
        }
        assert_eq!(allocate_port(5000, (5000, 5010), PortPolicy::Preserve, 3, |p| used.contains(&p)), None);
        // A reversed range is read as the same range; a one-port range works.
        assert_eq!(allocate_port(1, (9, 9), PortPolicy::Random, 5, |_| false), Some(9));
    }

    #[test]
    fn probing_is_bounded() {
        let mut probes = 0;
        let port = allocate_port(1, (1024, 65535), PortPolicy::Random, 99, |_| {
            probes += 1;
            true
        });
        assert_eq!((port, probes), (None, MAX_PORT_TRIES));
    }
}
