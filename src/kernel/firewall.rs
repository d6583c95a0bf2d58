//! The kernel's main loop: hardware around `unifw_core::firewall::Firewall`.
//! The core does all the work of one poll (frames through the packet path,
//! the IP stacks, buffers, housekeeping, reports); this file polls it,
//! busy while frames flow, then arms NIC interrupts and the LAPIC timer and
//! halts until a frame or the next deadline.

use crate::kernel::arch::idt::{NIC_INTERRUPTS, TIMER_INTERRUPTS};
use crate::kernel::arch::{apic, clock, cpu, smp};
use crate::kernel::heap;
use crate::kernel::virtio::net::NetDriver;
use crate::kernel::virtio::FoundNic;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use unifw_core::firewall::{Firewall, NetDevice, NicSet, Wakeups};
use unifw_core::net::addr::MacAddr;
use unifw_core::virtio_net::describe_offloads;
use unifw_core::virtio_net::feature::RING_EVENT_IDX;

/// Keep polling this long after the last frame before sleeping, by
/// default (`unifw.busypoll=MICROSECONDS` sets it): none. A vCPU halts as
/// soon as a pass finds nothing, as a Linux guest's NAPI does (on KVM the
/// host's halt polling then shortens the wake-up). Measured under TCG
/// (README, "Busy polling"), 500 us of spinning lost on latency and TCP
/// (idle ping through 0.64 ms against 0.44, 99th percentile under load
/// 2.06 ms against 0.88, TCP 8,061 against 9,513 Mb/s) and with 2 vCPUs on
/// 64-byte frames (105,551/s against 117,487); one vCPU's 64-byte rate was
/// the same within the spread. Likely cause: a spinning vCPU takes host
/// CPU from QEMU's I/O thread, which moves every frame.
pub const BUSY_POLL_DEFAULT_US: u32 = 0;
/// Heap never carved that receive rings may not grow into (bytes).
const GROWTH_RESERVE: usize = 16 << 20;
/// Wake-up period for NICs whose interrupts cannot reach us.
pub const FALLBACK_POLL_US: u64 = 1_000;

/// The NICs as the loop drives them.
pub struct Announced {
    /// Each NIC's first queue pair, in discovery order (which names them
    /// unless MAC bindings say otherwise).
    pub drivers: Vec<NetDriver>,
    /// Each NIC's other queue pairs (empty without multiqueue), for CPUs
    /// of their own; kept, since a pair's queues are the device's.
    pub more: Vec<Vec<NetDriver>>,
    /// Whether all of them can wake the CPU with an interrupt.
    pub all_can_wake: bool,
}

/// Logs what each found NIC is, and returns its drivers.
pub fn announce(found: Vec<FoundNic>) -> Announced {
    let all_can_wake = found.iter().all(|nic| nic.can_wake);
    let mut more = Vec::new();
    let drivers = found
        .into_iter()
        .enumerate()
        .map(|(index, nic)| {
            let wake = if nic.can_wake { "interrupts" } else { "polled (no interrupt route)" };
            let pairs = 1 + nic.more.len();
            let queue_pairs = if pairs == 1 && nic.offered_pairs == 1 {
                String::new()
            } else {
                format!(", queue pairs {pairs} of {}", nic.offered_pairs)
            };
            log::info!(
                "NIC {index}: virtio-net {} mac {} wake {wake}, offloads {}, notifications by {}, rings rx {} tx {}{queue_pairs}",
                nic.location,
                MacAddr(nic.driver.mac()),
                describe_offloads(nic.driver.features()),
                if nic.driver.features() & RING_EVENT_IDX != 0 { "event index" } else { "flags" },
                nic.driver.receive_ring_size(),
                nic.driver.transmit_ring_size()
            );
            more.push(nic.more);
            nic.driver
        })
        .collect();
    Announced { drivers, more, all_can_wake }
}

/// Serves the network forever.
pub fn run(firewall: &mut Firewall<'_, NetDriver>, all_can_wake: bool, busy_poll_us: u32) -> ! {
    crate::kernel::panic::crash_test(0);
    poll_loop(
        firewall,
        busy_poll_us,
        |firewall, now| {
            if smp::any_sleeping() {
                smp::wake_if_frames();
            }
            firewall.poll_once(now)
        },
        |firewall| sleep(firewall, all_can_wake),
    )
}

/// The loop of every vCPU: `poll` while it finds work, busy for
/// `busy_poll_us` after the last, then `sleep`. After a sleep it polls
/// once more; only frames found then restart the busy window (a timer
/// wake-up with nothing to do sleeps again).
pub fn poll_loop<T>(state: &mut T, busy_poll_us: u32, poll: impl Fn(&mut T, u64) -> bool, sleep: impl Fn(&mut T)) -> ! {
    let busy_poll_us = u64::from(busy_poll_us);
    let mut last_work = clock::now_us();
    loop {
        let now = clock::now_us();
        if poll(state, now) {
            last_work = now;
        } else if now.saturating_sub(last_work) < busy_poll_us {
            cpu::relax();
        } else {
            sleep(state);
            last_work = clock::now_us().saturating_sub(busy_poll_us);
        }
    }
}

/// Idle time is when receive rings grow to full size (clearing 64 KiB
/// buffers at boot would delay the first reply), past the assured buffers
/// only while the heap keeps a reserve for what the firewall allocates at
/// run time. True if it grew some (then the caller polls again).
pub fn grow_at_idle(nics: &mut NicSet<NetDriver>) -> bool {
    nics.grow(heap::stats().1 > GROWTH_RESERVE)
}

/// Halts (interrupts enabled only for the halt) until an interrupt or
/// `budget_us` from now.
pub fn halt_for(budget_us: u64) {
    apic::timer_oneshot(Some(budget_us));
    cpu::enable_interrupts_and_halt();
    cpu::disable_interrupts();
    apic::timer_oneshot(None);
}

/// Turns every NIC's receive interrupts off again after a sleep.
pub fn receive_interrupts_off(nics: &mut NicSet<NetDriver>) {
    for index in 0..nics.len() {
        if let Some(driver) = nics.device_mut(index) {
            driver.set_receive_interrupts(false);
        }
    }
}

/// Sleeps until a NIC interrupt or the next deadline.
fn sleep(firewall: &mut Firewall<'_, NetDriver>, all_can_wake: bool) {
    if grow_at_idle(firewall.nics_mut()) {
        return;
    }
    cpu::disable_interrupts();
    let nics = firewall.nics_mut();
    let mut pending = false;
    for index in 0..nics.len() {
        if let Some(driver) = nics.device_mut(index) {
            pending |= driver.set_receive_interrupts(true);
            driver.ack_interrupt();
            pending |= driver.can_receive();
        }
    }
    if !pending {
        let mut budget = firewall.sleep_budget_us(clock::now_us());
        if !all_can_wake {
            budget = budget.min(FALLBACK_POLL_US);
        }
        halt_for(budget);
    }
    receive_interrupts_off(firewall.nics_mut());
    firewall.note_wakeups(Wakeups {
        nic: NIC_INTERRUPTS.load(Ordering::Relaxed),
        timer: TIMER_INTERRUPTS.load(Ordering::Relaxed),
        relayed: crate::kernel::arch::smp::wakeups_relayed(),
        ..Wakeups::default()
    });
}
