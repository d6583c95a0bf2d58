//! Connection-tracking timeouts, modelled on Linux's defaults.
//!
//! | state                | here     | Linux sysctl (default)                          |
//! |----------------------|----------|-------------------------------------------------|
//! | TCP SYN_SENT         | 120 s    | nf_conntrack_tcp_timeout_syn_sent (120)         |
//! | TCP SYN_RECV         | 60 s     | nf_conntrack_tcp_timeout_syn_recv (60)          |
//! | TCP ESTABLISHED      | 432000 s | nf_conntrack_tcp_timeout_established (5 days)   |
//! | TCP FIN_WAIT         | 120 s    | nf_conntrack_tcp_timeout_fin_wait (120)         |
//! | TCP CLOSE_WAIT       | 60 s     | nf_conntrack_tcp_timeout_close_wait (60)        |
//! | TCP LAST_ACK         | 30 s     | nf_conntrack_tcp_timeout_last_ack (30)          |
//! | TCP TIME_WAIT        | 120 s    | nf_conntrack_tcp_timeout_time_wait (120)        |
//! | TCP CLOSE            | 10 s     | nf_conntrack_tcp_timeout_close (10)             |
//! | UDP, no reply yet    | 30 s     | nf_conntrack_udp_timeout (30)                   |
//! | UDP, replied         | 120 s    | nf_conntrack_udp_timeout_stream (120)           |
//! | ICMP query           | 30 s     | nf_conntrack_icmp_timeout (30)                  |
//! | other protocols      | 600 s    | nf_conntrack_generic_timeout (600)              |
//! | IP fragments         | 30 s     | ipfrag_time (30)                                |
//!
//! Linux's UDP "stream" timeout needs traffic in both directions more than
//! 2 s apart; here any reply switches the flow to the replied timeout.

/// Milliseconds per second.
const S: u64 = 1000;

/// TCP SYN_SENT.
pub const TCP_SYN_SENT_MS: u64 = 120 * S;
/// TCP SYN_RECV.
pub const TCP_SYN_RECV_MS: u64 = 60 * S;
/// TCP ESTABLISHED (5 days).
pub const TCP_ESTABLISHED_MS: u64 = 432_000 * S;
/// TCP FIN_WAIT.
pub const TCP_FIN_WAIT_MS: u64 = 120 * S;
/// TCP CLOSE_WAIT.
pub const TCP_CLOSE_WAIT_MS: u64 = 60 * S;
/// TCP LAST_ACK.
pub const TCP_LAST_ACK_MS: u64 = 30 * S;
/// TCP TIME_WAIT.
pub const TCP_TIME_WAIT_MS: u64 = 120 * S;
/// TCP CLOSE (after a RST).
pub const TCP_CLOSE_MS: u64 = 10 * S;
/// UDP before a reply.
pub const UDP_UNREPLIED_MS: u64 = 30 * S;
/// UDP after a reply.
pub const UDP_REPLIED_MS: u64 = 120 * S;
/// ICMP queries (echo and friends).
pub const ICMP_MS: u64 = 30 * S;
/// Other IP protocols.
pub const GENERIC_MS: u64 = 600 * S;
/// Fragment-table entries (first fragment seen, later ones pending).
pub const FRAGMENT_MS: u64 = 30 * S;
