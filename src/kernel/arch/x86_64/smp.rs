//! The other vCPUs (application processors). The boot CPU finds them in
//! ACPI's MADT, starts them one at a time (INIT, STARTUP to the real-mode
//! trampoline in `boot/entry.S`, copied to [`AP_TRAMPOLINE`]), and each
//! comes up on its own stack, GDT, TSS and local APIC, sharing the IDT and
//! the page tables. A started CPU parks (halted, interrupts on) until the
//! boot CPU hands it work with [`run_on`].

use super::{apic, cpu, gdt, idt, mtrr};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// Physical address the trampoline runs from (`AP_TRAMPOLINE` in entry.S):
/// page-aligned, below 1 MiB, and RAM by the loader's map.
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// The most CPUs the firewall uses (the boot CPU included); more in the
/// MADT are left halted, and said so.
pub const MAX_CPUS: usize = 8;
/// Stack of each other CPU.
const AP_STACK_SIZE: usize = 256 << 10;
/// How long a CPU may take from STARTUP to its first Rust instruction
/// before it is given up on (microseconds).
const START_TIMEOUT_US: u64 = 200_000;
/// Between STARTUP and its repeat, as the MP specification asks (the
/// second is sent only if the CPU has not arrived by then).
const STARTUP_RETRY_US: u64 = 200;

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// The stack the next starting CPU takes (read by `ap_boot64` in entry.S).
#[no_mangle]
static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The index the next starting CPU takes.
static AP_INDEX: AtomicUsize = AtomicUsize::new(0);
/// Set by a starting CPU once it runs Rust on its own stack.
static AP_ARRIVED: AtomicBool = AtomicBool::new(false);
/// CPUs running, the boot CPU included.
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Each CPU's local APIC ID, by index (the boot CPU is 0).
static APIC_IDS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

type Job = Box<dyn FnOnce() + Send>;
/// Work handed to each CPU, by index.
static JOBS: [Mutex<Option<Job>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// What starting the other CPUs came to.
#[derive(Debug)]
pub struct Started {
    /// CPUs running now, the boot CPU included.
    pub online: usize,
    /// CPUs the MADT lists.
    pub listed: usize,
}

/// CPUs running, the boot CPU included.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Starts up to `wanted` CPUs in all (the boot CPU included) of those the
/// MADT lists (`apic_ids`); `trampoline_is_ram` says the loader's map has
/// RAM at [`AP_TRAMPOLINE`]. Each failure is logged; the firewall runs on
/// whatever came up.
pub fn start(apic_ids: &[u32], wanted: usize, trampoline_is_ram: bool, now_us: fn() -> u64) -> Started {
    let me = apic::lapic_id();
    APIC_IDS.lock().push(me);
    let listed = apic_ids.len().max(1);
    let others: Vec<u32> = apic_ids.iter().copied().filter(|&id| id != u32::from(me)).collect();
    let wanted = wanted.min(MAX_CPUS);
    if others.is_empty() || wanted <= 1 {
        return Started { online: 1, listed };
    }
    if !trampoline_is_ram {
        log::error!("vCPUs: no RAM at {AP_TRAMPOLINE:#x} for the start-up code; running on one vCPU");
        return Started { online: 1, listed };
    }
    // SAFETY: the trampoline's bytes are in the kernel image between the
    // two symbols; the destination page is RAM by the loader's map, below
    // the heap (which starts at 1 MiB), and nothing else uses it.
    unsafe {
        let start = &raw const ap_trampoline_start;
        let len = (&raw const ap_trampoline_end as usize) - (start as usize);
        core::ptr::copy_nonoverlapping(start, AP_TRAMPOLINE as usize as *mut u8, len);
    }
    for &id in &others {
        let index = online();
        if index >= wanted {
            break;
        }
        let Ok(apic_id) = u8::try_from(id) else {
            log::warn!("vCPU with APIC ID {id}: beyond xAPIC's 255; not started");
            continue;
        };
        let stack: &'static mut [u8] = Box::leak(vec![0u8; AP_STACK_SIZE].into_boxed_slice());
        let top = (stack.as_ptr() as u64 + AP_STACK_SIZE as u64) & !15;
        AP_STACK_TOP.store(top, Ordering::Release);
        AP_INDEX.store(index, Ordering::Release);
        AP_ARRIVED.store(false, Ordering::Release);
        // Modern CPUs need no 10 ms pause after INIT (Linux skips it too).
        apic::send_init(apic_id);
        let page = (AP_TRAMPOLINE >> 12) as u8;
        apic::send_startup(apic_id, page);
        let sent = now_us();
        let mut retried = false;
        while !AP_ARRIVED.load(Ordering::Acquire) {
            let waited = now_us().saturating_sub(sent);
            if !retried && waited >= STARTUP_RETRY_US {
                apic::send_startup(apic_id, page);
                retried = true;
            }
            if waited >= START_TIMEOUT_US {
                break;
            }
            cpu::relax();
        }
        if AP_ARRIVED.load(Ordering::Acquire) {
            APIC_IDS.lock().push(apic_id);
            ONLINE.store(index + 1, Ordering::Release);
        } else {
            log::error!("vCPU with APIC ID {apic_id}: did not start within {} ms", START_TIMEOUT_US / 1000);
        }
    }
    if apic_ids.len() > MAX_CPUS && wanted == MAX_CPUS {
        log::warn!("vCPUs: the machine has {}; unifw uses at most {MAX_CPUS}", apic_ids.len());
    }
    Started { online: online(), listed }
}

/// Hands `job` to CPU `index` (1 ..): it runs there once, then the CPU
/// parks again. False if no such CPU is online or it still has a job.
pub fn run_on(index: usize, job: Job) -> bool {
    if index == 0 || index >= online() {
        return false;
    }
    let Some(slot) = JOBS.get(index) else {
        return false;
    };
    {
        let mut slot = slot.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(job);
    }
    wake(index);
    true
}

/// Interrupts CPU `index` out of a halt (a no-op for one that is running).
pub fn wake(index: usize) {
    if let Some(&apic_id) = APIC_IDS.lock().get(index) {
        apic::send_interrupt(apic_id, idt::WAKE_VECTOR);
    }
}

/// Rust entry of a started CPU (from `ap_boot64` in entry.S), on its own
/// stack.
#[no_mangle]
extern "C" fn ap_entry() -> ! {
    let index = AP_INDEX.load(Ordering::Acquire);
    mtrr::init();
    gdt::init_other_cpu();
    idt::load();
    apic::init_local();
    AP_ARRIVED.store(true, Ordering::Release);
    loop {
        cpu::disable_interrupts();
        let job = JOBS.get(index).and_then(|slot| slot.lock().take());
        match job {
            Some(job) => job(),
            // A wake-up between the check and the halt still ends the halt.
            None => cpu::enable_interrupts_and_halt(),
        }
    }
}
