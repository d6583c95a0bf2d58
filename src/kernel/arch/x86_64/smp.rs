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
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
/// Each CPU's local APIC ID, by index (the boot CPU is 0), once online
/// (atomics, not a lock: interrupt handlers read them).
static APIC_IDS: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Which CPUs are halted waiting for their queues (set by the CPU itself).
static SLEEPING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

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
    APIC_IDS[0].store(me, Ordering::Release);
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
            if let Some(slot) = APIC_IDS.get(index) {
                slot.store(apic_id, Ordering::Release);
            }
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
    if index == 0 || index >= online() {
        return;
    }
    if let Some(apic_id) = APIC_IDS.get(index) {
        apic::send_interrupt(apic_id.load(Ordering::Acquire), idt::WAKE_VECTOR);
    }
}

/// Stops every other online CPU with an NMI (the panic handler: one
/// vCPU's panic stops them all, so that no vCPU goes on with a share of
/// the flows lost and the rest served as if nothing happened). Their NMI
/// handler halts them for good ([`crate::kernel::panic::stopping`]).
pub fn stop_others() {
    let me = apic::lapic_id();
    for id in APIC_IDS.iter().take(online().min(MAX_CPUS)) {
        let id = id.load(Ordering::Acquire);
        if id != me {
            apic::send_nmi(id);
        }
    }
}

/// Marks CPU `index` as halted waiting for its queues (or awake again).
pub fn set_sleeping(index: usize, sleeping: bool) {
    if let Some(flag) = SLEEPING.get(index) {
        flag.store(sleeping, Ordering::SeqCst);
    }
}

/// Whether any other CPU is halted waiting for its queues.
pub fn any_sleeping() -> bool {
    SLEEPING.iter().any(|flag| flag.load(Ordering::Relaxed))
}

/// Receive queues a sleeping CPU waits on, at most.
const MAX_WATCHES: usize = 8;
/// Per CPU: where each of its receive queues' used index lies and the
/// value the CPU last took, as `address << 16 | index` (0: none).
static WATCHES: [[AtomicU64; MAX_WATCHES]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; MAX_WATCHES] }; MAX_CPUS];

/// CPU `index` waits on a receive queue (slot `slot`) whose device writes
/// its used index at `address` and whose last taken entry was `seen`.
pub fn watch(index: usize, slot: usize, address: usize, seen: u16) {
    if let Some(watch) = WATCHES.get(index).and_then(|w| w.get(slot)) {
        watch.store(((address as u64) << 16) | u64::from(seen), Ordering::SeqCst);
    }
}

/// CPU `index` waits on nothing.
pub fn clear_watches(index: usize) {
    for watch in WATCHES.get(index).into_iter().flatten() {
        watch.store(0, Ordering::Relaxed);
    }
}

/// Wake-ups passed on by [`wake_if_frames`].
static RELAYED: AtomicU64 = AtomicU64::new(0);

/// How many times a halted CPU was woken for a frame on its queues by
/// another CPU ([`wake_if_frames`]).
pub fn wakeups_relayed() -> u64 {
    RELAYED.load(Ordering::Relaxed)
}

/// Wakes each CPU halted waiting for its queues whose queue has a frame.
/// NIC interrupts reach the boot CPU only (one line or MSI-X message per
/// device, routed there): it looks with this from its interrupt handler,
/// and on each pass of its loop while it works with interrupts masked.
pub fn wake_if_frames() {
    for index in 1..online().min(MAX_CPUS) {
        if !SLEEPING[index].load(Ordering::SeqCst) {
            continue;
        }
        let moved = WATCHES[index].iter().any(|watch| {
            let watch = watch.load(Ordering::SeqCst);
            let address = (watch >> 16) as usize;
            // SAFETY: a non-zero watch names the used index of a queue
            // whose ring memory its driver keeps for good (the DMA
            // allocation is never freed); reading it races only with the
            // device's writes, which is what volatile is for.
            address != 0 && unsafe { core::ptr::read_volatile(address as *const u16) } != watch as u16
        });
        // One wake-up per sleep: whoever clears the flag sends it (the
        // CPU halts with interrupts off until `sti; hlt`, so a wake-up
        // sent before its halt still ends it).
        if moved && SLEEPING[index].compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            RELAYED.fetch_add(1, Ordering::Relaxed);
            wake(index);
        }
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
