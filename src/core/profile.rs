//! Where a frame's time goes inside the guest (`unifw.profile=on`): cycles
//! spent in each step of the main loop and the packet path, summed since
//! the last report and printed with it as nanoseconds per received frame.
//!
//! Off by default: then every span is one branch. On, one main-loop pass
//! in [`SAMPLE_EVERY`] is timed (with all its frames): a clock read costs
//! about a microsecond on a nested host, where the TSC traps, so timing
//! every pass would slow the loop it measures severalfold. Each timed pass
//! also times a span around nothing, and each span's figure has the mean
//! of those (the clock's own cost, as the loop sees it) taken out.
//! The clock is wall time: time the host took the vCPU away is in it.

use alloc::format;
use alloc::string::String;

/// One main-loop pass in this many is timed.
pub const SAMPLE_EVERY: u32 = 16;

/// A step of the work on frames, in the order a forwarded frame meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Taking a received frame from its NIC (virtio used ring); its count
    /// is the number of frames timed.
    Receive,
    /// The whole packet path (`Dataplane::handle_offloaded_frame`); the
    /// report shows it less the steps inside it ("parse and checks").
    Path,
    /// Connection tracking: the flow lookup and the new flow's confirmation.
    Conntrack,
    /// The rules: `classify` over the compiled image.
    Lookup,
    /// Route, MAC and TTL rewrite on the way out.
    Rewrite,
    /// Queuing the frame on the output NIC (virtio available ring).
    Enqueue,
    /// The firewall's own IP stacks and metrics servers, polled each pass.
    Stack,
    /// Sent buffers back, receive queues refilled.
    Reclaim,
    /// The devices told of new buffers (virtio notifications: MMIO or
    /// port writes, which leave the guest).
    Notify,
    /// Timers of the packet path (connection expiry, neighbours).
    Housekeeping,
    /// Waiting for the packet path's lock while another vCPU holds it.
    PathWait,
    /// A pass of the main loop that found nothing to do.
    EmptyPoll,
    /// A span around nothing: what a clock read costs.
    Clock,
}

/// Number of steps.
pub const STEPS: usize = 13;

impl Step {
    /// Every step, in report order (`Step as usize`).
    pub const ALL: [Step; STEPS] = [
        Step::Receive,
        Step::Path,
        Step::Conntrack,
        Step::Lookup,
        Step::Rewrite,
        Step::Enqueue,
        Step::Stack,
        Step::Reclaim,
        Step::Notify,
        Step::Housekeeping,
        Step::PathWait,
        Step::EmptyPoll,
        Step::Clock,
    ];

    /// Its name in the report (`Path` is reported less the steps inside it).
    pub fn name(self) -> &'static str {
        match self {
            Step::Receive => "receive",
            Step::Path => "parse and checks",
            Step::Conntrack => "conntrack",
            Step::Lookup => "lookup",
            Step::Rewrite => "rewrite",
            Step::Enqueue => "enqueue",
            Step::Stack => "stack",
            Step::Reclaim => "reclaim",
            Step::Notify => "notify",
            Step::Housekeeping => "housekeeping",
            Step::PathWait => "waiting for the path",
            Step::EmptyPoll => "empty poll",
            Step::Clock => "clock",
        }
    }
}

/// The steps timed inside [`Step::Path`].
const INSIDE_PATH: [Step; 3] = [Step::Conntrack, Step::Lookup, Step::Rewrite];

/// The clock: a cycle counter and its rate.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Reads the counter.
    pub read: fn() -> u64,
    /// Its rate, kHz.
    pub khz: u64,
}

/// Cycle sums per step over the timed passes, or nothing when off.
#[derive(Debug, Default)]
pub struct Profile {
    clock: Option<Clock>,
    /// Whether this pass is timed.
    active: bool,
    passes: u32,
    cycles: [u64; STEPS],
    calls: [u64; STEPS],
}

impl Profile {
    /// Profiling with `clock`, or off with `None`.
    pub fn new(clock: Option<Clock>) -> Profile {
        Profile { clock, ..Profile::default() }
    }

    /// Whether profiling is on.
    pub fn enabled(&self) -> bool {
        self.clock.is_some()
    }

    /// Its clock, when profiling is on.
    pub fn clock(&self) -> Option<Clock> {
        self.clock
    }

    /// A main-loop pass begins: it is timed if it is the
    /// [`SAMPLE_EVERY`]th. Returns its start (0 when not timed).
    #[inline]
    pub fn begin_pass(&mut self) -> u64 {
        if self.clock.is_none() {
            return 0;
        }
        self.passes = self.passes.wrapping_add(1);
        self.active = self.passes.is_multiple_of(SAMPLE_EVERY);
        let nothing = self.start();
        self.stop(Step::Clock, nothing);
        self.start()
    }

    /// The start of a span (0 when this pass is not timed).
    #[inline]
    pub fn start(&self) -> u64 {
        match self.clock {
            Some(c) if self.active => (c.read)(),
            _ => 0,
        }
    }

    /// Ends the span of `step` begun at `started`. A span begun while the
    /// pass was not timed (`started` 0) is not counted, even if another
    /// vCPU began a timed pass since.
    #[inline]
    pub fn stop(&mut self, step: Step, started: u64) {
        match self.clock {
            // The clock only for a timed pass: a read costs.
            Some(clock) if self.active => self.record(step, started, (clock.read)()),
            _ => {}
        }
    }

    /// Records a span of `step` from `started` to `ended`, clock readings
    /// taken by the caller (another vCPU, outside the lock that guards
    /// this profile): counted if this pass is timed and `started` is a
    /// reading (not 0).
    pub fn record(&mut self, step: Step, started: u64, ended: u64) {
        if self.clock.is_some() && self.active && started != 0 {
            let index = step as usize;
            if let (Some(cycles), Some(calls)) = (self.cycles.get_mut(index), self.calls.get_mut(index)) {
                *cycles = cycles.wrapping_add(ended.wrapping_sub(started));
                *calls += 1;
            }
        }
    }

    /// The report line for the passes timed since the last one (None when
    /// off or no frame was timed), and the sums start over.
    pub fn take_line(&mut self) -> Option<String> {
        let clock = self.clock?;
        let cycles = core::mem::take(&mut self.cycles);
        let calls = core::mem::take(&mut self.calls);
        let at = |table: &[u64; STEPS], step: Step| table.get(step as usize).copied().unwrap_or(0);
        let frames = at(&calls, Step::Receive);
        if frames == 0 {
            return None;
        }
        // Each span measured one clock read more than its work; the path
        // also holds the second read of each span inside it.
        let rc = at(&cycles, Step::Clock) / at(&calls, Step::Clock).max(1);
        let net = |step: Step| at(&cycles, step).saturating_sub(at(&calls, step).saturating_mul(rc));
        let inside: u64 = INSIDE_PATH.iter().map(|&s| net(s) + 2 * rc * at(&calls, s)).sum();
        let ns = |c: u64| (u128::from(c) * 1_000_000 / u128::from(clock.khz.max(1))) as u64;
        let per_frame = |c: u64| ns(c) as f64 / frames as f64;
        let mut line = format!("profile: {frames} frames timed, ns per frame:");
        let mut total = 0.0;
        // The clock's own span is taken out, not reported.
        for step in Step::ALL.into_iter().filter(|&s| s != Step::Clock) {
            let c = if step == Step::Path { net(step).saturating_sub(inside) } else { net(step) };
            let value = per_frame(c);
            if step != Step::EmptyPoll {
                total += value;
            }
            line.push_str(&format!(" {} {value:.0}", step.name()));
        }
        let empty = at(&calls, Step::EmptyPoll);
        let busy = at(&calls, Step::Reclaim).saturating_sub(empty);
        line.push_str(&format!(
            "; total {total:.0} ns; {busy} busy passes ({:.1} frames each), {empty} empty; a clock read {} ns, taken out",
            frames as f64 / busy.max(1) as f64,
            ns(rc)
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
    fn a_span_begun_before_a_timed_pass_is_not_counted() {
        let mut profile = Profile::new(Some(Clock { read: ticking, khz: 1_000_000 }));
        // Another vCPU's span begins in an untimed pass...
        let started = profile.start();
        assert_eq!(started, 0);
        // ...and ends in a timed one, begun meanwhile.
        for _ in 0..SAMPLE_EVERY {
            profile.begin_pass();
        }
        profile.stop(Step::Enqueue, started);
        let receive = profile.start();
        profile.stop(Step::Receive, receive);
        let line = profile.take_line().expect("a line");
        assert!(line.contains(" enqueue 0 "), "{line}");
    }

    #[test]
    fn all_lists_every_step_at_its_index() {
        for (index, step) in Step::ALL.into_iter().enumerate() {
            assert_eq!(step as usize, index, "{}", step.name());
        }
    }

    #[test]
    fn off_records_nothing_and_reports_nothing() {
        let mut profile = Profile::new(None);
        profile.begin_pass();
        let started = profile.start();
        profile.stop(Step::Receive, started);
        assert!(!profile.enabled());
        assert_eq!(profile.take_line(), None);
    }

    #[test]
    fn one_pass_in_sample_every_is_timed_and_the_clock_cost_is_taken_out() {
        let mut profile = Profile::new(Some(Clock { read: ticking, khz: 1_000_000 }));
        for _ in 0..SAMPLE_EVERY * 2 {
            profile.begin_pass();
            // Two frames a pass: receive, then a path span around a lookup.
            for _ in 0..2 {
                let receive = profile.start();
                profile.stop(Step::Receive, receive);
                let path = profile.start();
                let lookup = profile.start();
                profile.stop(Step::Lookup, lookup);
                profile.stop(Step::Path, path);
            }
            let flush = profile.start();
            profile.stop(Step::Reclaim, flush);
        }
        // Two passes were timed: four frames. The ticking clock's spans
        // hold nothing but clock reads, so every step is 0 once they are
        // taken out.
        let line = profile.take_line().expect("a line");
        assert!(
            line.starts_with(
                "profile: 4 frames timed, ns per frame: receive 0 parse and checks 0 conntrack 0 lookup 0"
            ),
            "{line}"
        );
        assert!(
            line.contains("; total 0 ns; 2 busy passes (2.0 frames each), 0 empty; a clock read 1000 ns"),
            "{line}"
        );
        // The sums started over.
        assert_eq!(profile.take_line(), None);
    }
}
