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

use crate::kernel::arch::{apic, clock, cpu, smp};
use crate::kernel::heap;
use crate::kernel::virtio::net::NetDriver;
use unifw_core::firewall::Worker;

/// Heap never carved that a worker's receive rings may not grow into.
const GROWTH_RESERVE: usize = super::firewall::GROWTH_RESERVE;
/// A sleeping worker wakes at least this often (microseconds) even if no
/// wake-up came: a bound on any missed one.
const SLEEP_MAX_US: u64 = 100_000;
/// Wake-up period when some NIC cannot interrupt.
const FALLBACK_POLL_US: u64 = 1_000;

/// Serves vCPU `cpu`'s queues forever.
pub fn run(mut worker: Worker<'static, NetDriver>, cpu: usize, all_can_wake: bool, busy_poll_us: u32) -> ! {
    let busy_poll_us = u64::from(busy_poll_us);
    let mut last_work = clock::now_us();
    loop {
        let now = clock::now_us();
        if worker.poll_once(now) {
            last_work = now;
        } else if now.saturating_sub(last_work) < busy_poll_us {
            cpu::relax();
        } else {
            sleep(&mut worker, cpu, all_can_wake);
            last_work = clock::now_us().saturating_sub(busy_poll_us);
        }
    }
}

fn sleep(worker: &mut Worker<'static, NetDriver>, index: usize, all_can_wake: bool) {
    let spare_memory = heap::stats().1 > GROWTH_RESERVE;
    if worker.nics_mut().grow(spare_memory) {
        return;
    }
    cpu::disable_interrupts();
    let nics = worker.nics_mut();
    let mut pending = false;
    let mut watches = 0;
    for nic in 0..nics.len() {
        if let Some(driver) = nics.device_mut(nic) {
            pending |= driver.set_receive_interrupts(true);
            let (address, seen) = driver.receive_watch();
            smp::watch(index, watches, address, seen);
            watches += 1;
        }
    }
    // Asleep from now for the boot vCPU; a frame that came before it
    // looked is seen here.
    smp::set_sleeping(index, true);
    for nic in 0..nics.len() {
        pending |= nics.device(nic).is_some_and(NetDriver::can_receive);
    }
    if !pending {
        apic::timer_oneshot(Some(if all_can_wake { SLEEP_MAX_US } else { FALLBACK_POLL_US }));
        cpu::enable_interrupts_and_halt();
        cpu::disable_interrupts();
        apic::timer_oneshot(None);
    }
    smp::set_sleeping(index, false);
    smp::clear_watches(index);
    let nics = worker.nics_mut();
    for nic in 0..nics.len() {
        if let Some(driver) = nics.device_mut(nic) {
            driver.set_receive_interrupts(false);
        }
    }
}
