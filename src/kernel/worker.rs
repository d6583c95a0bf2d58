//! The loop of every vCPU past the first: a `unifw_core::firewall::Worker`
//! on that vCPU's queue pair of each NIC, polled while frames flow, then
//! halted until its queues have frames again.
//!
//! Waking a worker: a NIC has one interrupt line (or MSI-X message), and it
//! reaches the boot vCPU only. So a worker going to sleep publishes, per
//! receive queue, where the device writes its used index and the value it
//! last took ([`crate::kernel::arch::smp::watch`]); the boot vCPU compares
//! them on each pass of its loop and in its NIC interrupt handler, and
//! sends the worker a wake-up IPI when a queue moved. The worker turns on
//! its receive interrupts before it sleeps, so a frame wakes a halted boot
//! vCPU, which passes the wake-up on.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::firewall::{grow_at_idle, halt_for, poll_loop, receive_interrupts_off, FALLBACK_POLL_US};
use crate::kernel::arch::{cpu, smp};
use crate::kernel::virtio::net::NetDriver;
use unifw_core::firewall::Worker;

/// A sleeping worker wakes at least this often (microseconds) even if no
/// wake-up came: a bound on any missed one.
const SLEEP_MAX_US: u64 = 100_000;

/// Serves vCPU `cpu`'s queues forever.
pub fn run(mut worker: Worker<'static, NetDriver>, cpu: usize, all_can_wake: bool, busy_poll_us: u32) -> ! {
    let nics = worker.nics_mut();
    let here: Vec<String> = (0..nics.len())
        .filter(|&nic| nics.device_mut(nic).is_some_and(NetDriver::aim_receive_interrupts_here))
        .map(|nic| format!("eth{nic}"))
        .collect();
    if !here.is_empty() {
        log::info!("vCPU {cpu}: receive interrupts of {} come here (MSI-X)", here.join(", "));
    }
    crate::kernel::panic::crash_test(cpu);
    poll_loop(&mut worker, busy_poll_us, |worker, now| worker.poll_once(now), |worker| sleep(worker, cpu, all_can_wake))
}

fn sleep(worker: &mut Worker<'static, NetDriver>, index: usize, all_can_wake: bool) {
    if grow_at_idle(worker.nics_mut()) {
        return;
    }
    cpu::disable_interrupts();
    let nics = worker.nics_mut();
    let mut pending = false;
    let mut watches = 0;
    for nic in 0..nics.len() {
        if let Some(driver) = nics.device_mut(nic) {
            pending |= driver.set_receive_interrupts(true);
            // A queue whose interrupts come here wakes this vCPU itself.
            if !driver.receive_interrupts_here() {
                let (address, seen) = driver.receive_watch();
                smp::watch(index, watches, address, seen);
                watches += 1;
            }
        }
    }
    // Asleep from now for the boot vCPU; a frame that came before it
    // looked is seen here.
    smp::set_sleeping(index, true);
    for nic in 0..nics.len() {
        pending |= nics.device(nic).is_some_and(NetDriver::can_receive);
    }
    if !pending {
        halt_for(if all_can_wake { SLEEP_MAX_US } else { FALLBACK_POLL_US });
    }
    smp::set_sleeping(index, false);
    smp::clear_watches(index);
    receive_interrupts_off(worker.nics_mut());
}
