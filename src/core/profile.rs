//! Where a frame's time goes inside the guest (`unifw.profile=on`): cycles
//! spent in each step of the main loop and the packet path, summed since
//! the last report and printed with it as nanoseconds per received frame.
//!
//! Off by default: then every span is one branch on `None`. On, each span
//! reads the clock the kernel gave (the TSC) twice; under TCG a read costs
//! tens of nanoseconds, so the figures carry that overhead (the report
//! prints the clock's own cost, measured at start, for subtraction).

use alloc::format;
use alloc::string::String;

/// A step of the work on frames, in the order a forwarded frame meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Taking a received frame from its NIC (virtio used ring).
    Receive,
    /// The whole packet path (`Dataplane::handle_offloaded_frame`); the
    /// report shows it less the steps below it ("parse and checks").
    Path,
    /// Connection tracking: the flow lookup and the new flow's confirmation.
    Conntrack,
    /// The rules: `classify` over the compiled image.
    Lookup,
    /// Route, MAC and TTL rewrite on the way out.
    Rewrite,
    /// Queuing the frame on the output NIC (virtio available ring).
    Enqueue,
    /// The firewall's own IP stacks and metrics servers, polled each loop.
    Stack,
    /// Sent buffers back, receive queues refilled, devices notified.
    Flush,
    /// Timers of the packet path (connection expiry, reports).
    Housekeeping,
    /// A pass of the main loop that found nothing to do.
    EmptyPoll,
}

/// Number of steps.
pub const STEPS: usize = 10;

const NAMES: [&str; STEPS] =
    ["receive", "path", "conntrack", "lookup", "rewrite", "enqueue", "stack", "flush", "housekeeping", "empty poll"];

/// The clock: a cycle counter and its rate.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Reads the counter.
    pub read: fn() -> u64,
    /// Its rate, kHz.
    pub khz: u64,
}

/// Cycle sums per step, or nothing when profiling is off.
#[derive(Debug, Default)]
pub struct Profile {
    clock: Option<Clock>,
    cycles: [u64; STEPS],
    calls: [u64; STEPS],
    /// Cycles one pair of clock reads costs (measured when switched on).
    read_cost: u64,
}

impl Profile {
    /// Profiling with `clock`, or off with `None`.
    pub fn new(clock: Option<Clock>) -> Profile {
        let mut profile = Profile { clock, ..Profile::default() };
        if let Some(clock) = clock {
            // The cheapest of a few back-to-back pairs: what a span costs
            // even around nothing.
            profile.read_cost = (0..16)
                .map(|_| {
                    let start = (clock.read)();
                    (clock.read)().wrapping_sub(start)
                })
                .min()
                .unwrap_or(0);
        }
        profile
    }

    /// Whether profiling is on.
    pub fn enabled(&self) -> bool {
        self.clock.is_some()
    }

    /// The start of a span (0 when off).
    #[inline]
    pub fn start(&self) -> u64 {
        self.clock.map_or(0, |c| (c.read)())
    }

    /// Ends the span of `step` begun at `started`.
    #[inline]
    pub fn stop(&mut self, step: Step, started: u64) {
        if let Some(clock) = self.clock {
            let spent = (clock.read)().wrapping_sub(started);
            let index = step as usize;
            if let (Some(cycles), Some(calls)) = (self.cycles.get_mut(index), self.calls.get_mut(index)) {
                *cycles = cycles.wrapping_add(spent);
                *calls += 1;
            }
        }
    }

    /// The report line for `frames` frames received since the last one
    /// (None when off or nothing was received), and the sums start over.
    pub fn take_line(&mut self, frames: u64) -> Option<String> {
        let clock = self.clock?;
        let cycles = core::mem::take(&mut self.cycles);
        let calls = core::mem::take(&mut self.calls);
        if frames == 0 {
            return None;
        }
        let ns = |c: u64| (u128::from(c) * 1_000_000 / u128::from(clock.khz.max(1))) as u64;
        let per_frame = |c: u64| ns(c) as f64 / frames as f64;
        let at = |step: Step| cycles.get(step as usize).copied().unwrap_or(0);
        let inner = at(Step::Conntrack) + at(Step::Lookup) + at(Step::Rewrite);
        let mut line = format!("profile: {frames} frames, ns per frame:");
        for (index, name) in NAMES.iter().enumerate() {
            let c = cycles.get(index).copied().unwrap_or(0);
            let c = if index == Step::Path as usize { c.saturating_sub(inner) } else { c };
            let name = if index == Step::Path as usize { "parse and checks" } else { name };
            line.push_str(&format!(" {name} {:.0}", per_frame(c)));
        }
        let empty = calls.get(Step::EmptyPoll as usize).copied().unwrap_or(0);
        let busy = calls.get(Step::Flush as usize).copied().unwrap_or(0).saturating_sub(empty);
        line.push_str(&format!(
            "; busy polls {busy} ({:.1} frames each), empty polls {empty}; a span costs {} ns",
            frames as f64 / busy.max(1) as f64,
            ns(self.read_cost)
        ));
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    static TICKS: AtomicU64 = AtomicU64::new(0);

    /// A clock that advances 1,000 cycles (1 us at 1 GHz) per read.
    fn ticking() -> u64 {
        TICKS.fetch_add(1000, Ordering::Relaxed)
    }

    #[test]
    fn off_records_nothing_and_reports_nothing() {
        let mut profile = Profile::new(None);
        let started = profile.start();
        profile.stop(Step::Lookup, started);
        assert!(!profile.enabled());
        assert_eq!(profile.take_line(10), None);
    }

    #[test]
    fn path_is_reported_less_the_steps_inside_it() {
        let mut profile = Profile::new(Some(Clock { read: ticking, khz: 1_000_000 }));
        assert_eq!(profile.read_cost, 1000);
        // Two frames: a path span of 3 us around a lookup span of 1 us.
        for _ in 0..2 {
            let path = profile.start();
            let lookup = profile.start();
            profile.stop(Step::Lookup, lookup);
            profile.stop(Step::Path, path);
            let flush = profile.start();
            profile.stop(Step::Flush, flush);
        }
        let line = profile.take_line(2).expect("a line");
        assert!(line
            .starts_with("profile: 2 frames, ns per frame: receive 0 parse and checks 2000 conntrack 0 lookup 1000"));
        assert!(line.contains("flush 1000"), "{line}");
        assert!(line.contains("busy polls 2 (1.0 frames each), empty polls 0; a span costs 1000 ns"), "{line}");
        // The sums started over.
        assert_eq!(profile.take_line(0), None);
        let line = profile.take_line(1).expect("a line");
        assert!(line.contains("lookup 0"), "{line}");
    }
}
