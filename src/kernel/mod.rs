//! The target shell: boot, hardware and drivers, wired to the host-testable
//! core in the `unifw` library.

mod acpi;
pub mod arch;
mod bootinfo;
mod config;
mod firewall;
mod heap;
mod logger;
mod panic;
mod pci;
mod serial;
mod virtio;
mod worker;

use alloc::vec::Vec;
use arch::{apic, clock, gdt, idt};
use bootinfo::BootInfo;
use log::LevelFilter;
use unifw_core::cmdline::{self, LogLevel};
use virtio::net::NetDriver;

extern "C" {
    static __kernel_end: u8;
}

/// Lowest address the heap may use above the image: leaves the loader's
/// low-memory structures alone.
const HEAP_MIN_START: u64 = 0x10_0000;
/// RAM pieces smaller than this are not worth a heap region.
const MIN_HEAP_REGION: u64 = 64 << 10;
/// The page tables map only the first 4 GiB.
const MAPPED_LIMIT: u64 = 1 << 32;

/// Rust entry point, called by the boot trampoline in long mode with the
/// loader's magic and information pointer.
#[no_mangle]
pub extern "C" fn kernel_entry(magic: u32, info: u32) -> ! {
    clock::mark_boot();
    let mtrr = arch::mtrr::init();
    logger::init(LevelFilter::Info);
    gdt::init();
    idt::init();
    apic::init();
    let Some(boot) = BootInfo::parse(magic, info) else {
        panic!("unknown boot protocol (magic {magic:#x}); boot with PVH or Multiboot2");
    };
    init_heap(&boot);
    let options = cmdline::parse(boot.cmdline(), |e| log::error!("{e}"));
    apply_options(&options);
    if boot.cmdline_truncated {
        log::error!("kernel command line longer than 4096 bytes; the rest was ignored");
    }
    let (khz, source) = clock::init();
    log::info!(
        "unifw {} booted via {:?}; TSC {}.{:03} MHz ({:?})",
        env!("CARGO_PKG_VERSION"),
        boot.protocol,
        khz / 1000,
        khz % 1000,
        source
    );
    if !mtrr {
        log::warn!("no MTRRs: memory caching left as the firmware set it");
    }
    if !boot.cmdline().is_empty() {
        log::info!("command line: {}", boot.cmdline());
    }
    let cpus = start_cpus(&boot, options.cpus.map_or(arch::smp::MAX_CPUS, usize::from));
    let image = config::image();
    log::info!(
        "rules: {} input + {} forward rules, {} KiB of tables, identity {:016x}, compiled at {} (unix time)",
        image.rule_count(unifw_core::flow::Chain::Input),
        image.rule_count(unifw_core::flow::Chain::Forward),
        image.table_bytes() / 1024,
        image.tables_hash(),
        config::RULES_COMPILED_AT
    );
    let plan = unifw_core::firewall::interface_plan(&image, &options);
    use unifw_core::virtio_net::feature::{OFFLOADS, RING_EVENT_IDX};
    let offloads = if options.offload == Some(false) { 0 } else { OFFLOADS };
    let event_idx = if options.event_idx == Some(false) { 0 } else { RING_EVENT_IDX };
    let found = virtio::discover(&options.mmio_devices, offloads | event_idx, cpus as u16);
    if found.is_empty() {
        log::error!("no virtio-net device found; nothing to do");
    }
    let firewall::Announced { mut drivers, mut more, all_can_wake } = firewall::announce(found);
    let pairs = balance_pairs(&mut drivers, &mut more, cpus);
    if cpus > 1 && !drivers.is_empty() {
        log::info!(
            "vCPUs: {pairs} serve NICs (one queue pair each){}",
            if pairs < cpus { "; the others idle: a NIC has fewer queue pairs" } else { "" }
        );
    }
    // What each worker's queues take before the connection table gets the rest.
    let worker_reserve = (pairs - 1) * drivers.len() * WORKER_RESERVE_PER_NIC;
    let settings = unifw_core::firewall::Settings {
        report_seconds: options.stats_seconds.unwrap_or(unifw_core::firewall::REPORT_DEFAULT_SECONDS),
        hash_seed: arch::cpu::random_seed(),
        rules_compiled_at: config::RULES_COMPILED_AT.parse().unwrap_or(0),
        conntrack_budget: heap::stats().1.saturating_sub(HEAP_RESERVE + worker_reserve),
        bounce: options.bounce.unwrap_or(false),
        profile: options.profile.unwrap_or(false).then_some(unifw_core::profile::Clock { read: arch::cpu::rdtsc, khz }),
    };
    let mut firewall = match unifw_core::firewall::Firewall::new(drivers, &plan, image, settings, clock::now_us()) {
        Ok(firewall) => firewall,
        Err(e) => panic!("packet path configuration refused: {e:?}"),
    };
    let busy_poll = options.busy_poll_us.unwrap_or(firewall::BUSY_POLL_DEFAULT_US);
    start_workers(&mut firewall, more, pairs, all_can_wake, busy_poll);
    let (in_use, free) = heap::stats();
    log::info!("ready in {} us; heap {} KiB used, {} MiB free", clock::now_us(), in_use / 1024, free >> 20);
    firewall::run(&mut firewall, all_can_wake, busy_poll)
}

/// Starts the other vCPUs the ACPI MADT lists, up to `wanted` in all
/// (they park until given work); returns how many are online.
fn start_cpus(boot: &BootInfo, wanted: usize) -> usize {
    let listed = match acpi::cpus(boot.rsdp()) {
        Ok(ids) => ids,
        Err(why) => {
            log::info!("vCPUs: {why} (ACPI); running on the boot vCPU only");
            return 1;
        }
    };
    let page = arch::smp::AP_TRAMPOLINE;
    let is_ram = boot.regions().iter().any(|r| r.start <= page && r.end >= page + 4096);
    let started = arch::smp::start(&listed, wanted, is_ram, clock::now_us);
    if started.online < started.listed.min(wanted) {
        log::warn!("vCPUs: {} of {} online", started.online, started.listed);
    } else {
        log::info!("vCPUs: {} of {} online", started.online, started.listed);
    }
    started.online
}

/// How many vCPUs serve NICs: one per queue pair, as many as every NIC
/// has (`more[i]`: NIC i's pairs past the first). A NIC that got more
/// pairs than that is told to use fewer (its device would otherwise steer
/// flows to queues nobody polls), and the pairs it no longer uses are
/// kept (their rings stay the device's) but not served.
fn balance_pairs(drivers: &mut [NetDriver], more: &mut [Vec<NetDriver>], cpus: usize) -> usize {
    let pairs = more.iter().map(|m| m.len() + 1).min().unwrap_or(1).min(cpus);
    for (index, (driver, extra)) in drivers.iter_mut().zip(more.iter_mut()).enumerate() {
        if extra.len() + 1 > pairs {
            if driver.set_queue_pairs(pairs as u16) {
                log::info!("NIC {index}: queue pairs reduced to {pairs}, as many as every NIC has");
            } else {
                log::error!("NIC {index}: could not reduce its queue pairs to {pairs}; frames on the others are lost");
            }
            for unused in extra.drain(pairs - 1..) {
                core::mem::forget(unused);
            }
        }
    }
    pairs
}

/// Starts a worker on each vCPU past the first, on queue pair `cpu` of
/// every NIC (`more[nic][cpu - 1]`).
fn start_workers(
    firewall: &mut unifw_core::firewall::Firewall<'static, NetDriver>,
    more: Vec<Vec<NetDriver>>,
    pairs: usize,
    all_can_wake: bool,
    busy_poll: u32,
) {
    let mut more: Vec<alloc::vec::IntoIter<NetDriver>> = more.into_iter().map(Vec::into_iter).collect();
    for cpu in 1..pairs {
        let devices: Vec<Option<NetDriver>> = more.iter_mut().map(Iterator::next).collect();
        let pair = devices.iter().flatten().map(NetDriver::pair).next().unwrap_or(0);
        log::info!("vCPU {cpu}: a worker on queue pair {pair} of each NIC");
        let Some(worker) = firewall.worker(devices) else {
            log::error!("vCPU {cpu}: no worker (at most {} vCPUs)", arch::smp::MAX_CPUS);
            continue;
        };
        let job = alloc::boxed::Box::new(move || worker::run(worker, cpu, all_can_wake, busy_poll));
        if !arch::smp::run_on(cpu, job) {
            log::error!("vCPU {cpu}: could not start its worker; its queue pairs are not served");
        }
    }
}

/// Heap left to everything built after the connection table (receive and
/// transmit buffers, the stacks): the table takes at most the rest.
const HEAP_RESERVE: usize = 8 << 20;
/// The same for each worker's queue pair of one NIC: its assured receive
/// buffers (64 of 64 KiB with offloads) and transmit pool.
const WORKER_RESERVE_PER_NIC: usize = 5 << 20;

fn init_heap(boot: &BootInfo) {
    // `__kernel_end` is a linker-script symbol: only its address is used.
    let kernel_end = (&raw const __kernel_end) as u64;
    let floor = kernel_end.max(HEAP_MIN_START);
    // Every RAM region above the kernel image and below the mapped limit,
    // largest first (under UEFI the map is in pieces; the largest serves
    // the big tables).
    let mut regions = [(0u64, 0u64); heap::MAX_HEAP_REGIONS];
    let mut count = 0;
    for region in boot.regions() {
        let (start, end) = (region.start.max(floor), region.end.min(MAPPED_LIMIT));
        if end <= start || end - start < MIN_HEAP_REGION {
            continue;
        }
        if count < regions.len() {
            regions[count] = (start, end);
            count += 1;
        } else if let Some(smallest) = regions.iter_mut().min_by_key(|(s, e)| e - s) {
            if end - start > smallest.1 - smallest.0 {
                *smallest = (start, end);
            }
        }
    }
    let regions = &mut regions[..count];
    regions.sort_unstable_by_key(|(s, e)| core::cmp::Reverse(e - s));
    if regions.is_empty() {
        panic!("no RAM above the kernel image (ends at {kernel_end:#x}); give the VM more memory");
    }
    for (start, end) in regions.iter() {
        // SAFETY: the region is RAM per the loader's map, lies above the
        // kernel image and its statics, and the loader's structures were
        // copied out.
        unsafe { heap::add_region(*start as usize, *end as usize) };
    }
}

fn apply_options(options: &cmdline::Options) {
    if let Some(level) = options.log_level {
        logger::set_level(match level {
            LogLevel::Off => LevelFilter::Off,
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        });
    }
    if let Some(reset) = options.panic_reset {
        panic::set_reset_on_panic(reset);
    }
    if options.crash_test.is_some() {
        log::warn!("unifw.crashtest: a vCPU will panic on purpose (a test of the panic policy, never in service)");
    }
    panic::set_crash_test(options.crash_test);
}
