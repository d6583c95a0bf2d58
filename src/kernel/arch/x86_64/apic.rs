//! Interrupt controllers: the local APIC (end of interrupt, one-shot timer),
//! the IOAPICs (routing virtio-mmio interrupt pins on microvm), and the
//! legacy 8259 PIC, which is masked.

use super::idt::{SPURIOUS_VECTOR, TIMER_VECTOR};
use super::port::outb;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};

const LAPIC_BASE: usize = 0xfee0_0000;
const LAPIC_ID: usize = 0x20;
const LAPIC_EOI: usize = 0xb0;
const LAPIC_SPURIOUS: usize = 0xf0;
const LAPIC_ICR_LOW: usize = 0x300;
const LAPIC_ICR_HIGH: usize = 0x310;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_NMI: u32 = 0b100 << 8;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_LVT_LINT0: usize = 0x350;
const LAPIC_LVT_LINT1: usize = 0x360;
const LAPIC_TIMER_INITIAL: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const IA32_APIC_BASE_MSR: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

/// IOAPIC base addresses: the standard one, and microvm's second IOAPIC
/// (GSIs 24..47) that carries its virtio-mmio interrupts.
const IOAPICS: [(usize, u32); 2] = [(0xfec0_0000, 0), (0xfec1_0000, 24)];
const IOAPIC_PINS: u32 = 24;

/// Local APIC timer ticks per millisecond (divide-by-16), from calibration.
static TIMER_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

fn lapic_read(reg: usize) -> u32 {
    // SAFETY: the local APIC register page is identity-mapped by the boot
    // page tables and `reg` is a register offset within it.
    unsafe { read_volatile((LAPIC_BASE + reg) as *const u32) }
}

fn lapic_write(reg: usize, value: u32) {
    // SAFETY: as for `lapic_read`.
    unsafe { write_volatile((LAPIC_BASE + reg) as *mut u32, value) }
}

/// Masks every line of both 8259 PICs (they may exist and would otherwise
/// deliver on vectors that collide with CPU exceptions).
fn mask_legacy_pic() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/// Enables the local APIC (xAPIC mode) and masks the legacy PIC.
pub fn init() {
    mask_legacy_pic();
    init_local();
}

/// Enables this CPU's local APIC (xAPIC mode): each CPU does it for its own.
pub fn init_local() {
    // SAFETY: reading and writing IA32_APIC_BASE to set the global enable
    // bit keeps the default base address, which the page tables map.
    unsafe {
        let mut msr = x86_64::registers::model_specific::Msr::new(IA32_APIC_BASE_MSR);
        let value = msr.read();
        msr.write(value | APIC_GLOBAL_ENABLE);
    }
    lapic_write(LAPIC_SPURIOUS, 0x100 | SPURIOUS_VECTOR as u32);
    // LINT0/LINT1 (the PIC's ExtINT and NMI lines) are not used.
    lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
    lapic_write(LAPIC_LVT_LINT1, LVT_MASKED);
    lapic_write(LAPIC_TIMER_DIVIDE, 0b0011); // divide by 16
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
}

/// This CPU's local APIC ID (the destination of MSI messages and IOAPIC routes).
pub fn lapic_id() -> u8 {
    (lapic_read(LAPIC_ID) >> 24) as u8
}

/// Sends an inter-processor interrupt (`command`: the ICR's low word) to
/// the CPU whose local APIC ID is `apic_id`, and waits until the local
/// APIC has sent it.
fn send_ipi(apic_id: u8, command: u32) {
    lapic_write(LAPIC_ICR_HIGH, u32::from(apic_id) << 24);
    lapic_write(LAPIC_ICR_LOW, command);
    while lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// INIT: the CPU resets and waits for a STARTUP.
pub fn send_init(apic_id: u8) {
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// STARTUP: the CPU starts in real mode at `page` x 4 KiB (below 1 MiB).
pub fn send_startup(apic_id: u8, page: u8) {
    send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page));
}

/// A fixed interrupt on `vector` to the CPU `apic_id`.
pub fn send_interrupt(apic_id: u8, vector: u8) {
    send_ipi(apic_id, ICR_LEVEL_ASSERT | u32::from(vector));
}

/// A non-maskable interrupt to the CPU `apic_id`: delivered even while it
/// runs with interrupts off (the panic handler stops the other CPUs so).
pub fn send_nmi(apic_id: u8) {
    send_ipi(apic_id, ICR_NMI | ICR_LEVEL_ASSERT);
}

/// Signals end of interrupt to the local APIC.
pub fn end_of_interrupt() {
    lapic_write(LAPIC_EOI, 0);
}

/// Starts the timer counting down from its maximum, for calibration.
pub fn timer_calibration_start() {
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    lapic_write(LAPIC_TIMER_INITIAL, u32::MAX);
}

/// Ends calibration: `elapsed_us` microseconds passed since the start.
pub fn timer_calibration_end(elapsed_us: u64) {
    let ticks = u64::from(u32::MAX - lapic_read(LAPIC_TIMER_CURRENT));
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    let per_ms = (ticks * 1000).checked_div(elapsed_us).unwrap_or(0);
    TIMER_TICKS_PER_MS.store(per_ms.max(1), Ordering::Relaxed);
}

/// Arms a one-shot timer interrupt `delay_us` from now (clamped to the
/// counter's range), or disarms it when `delay_us` is `None`.
pub fn timer_oneshot(delay_us: Option<u64>) {
    match delay_us {
        None => lapic_write(LAPIC_TIMER_INITIAL, 0),
        Some(us) => {
            let per_ms = TIMER_TICKS_PER_MS.load(Ordering::Relaxed);
            let ticks = (us.saturating_mul(per_ms) / 1000).clamp(1, u64::from(u32::MAX));
            lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR as u32);
            lapic_write(LAPIC_TIMER_INITIAL, ticks as u32);
        }
    }
}

fn ioapic_write(base: usize, reg: u32, value: u32) {
    // SAFETY: IOREGSEL (base) and IOWIN (base + 0x10) are the IOAPIC's two
    // registers, identity-mapped by the boot page tables.
    unsafe {
        write_volatile(base as *mut u32, reg);
        write_volatile((base + 0x10) as *mut u32, value);
    }
}

/// Routes global system interrupt `gsi` to `vector` on this CPU,
/// edge-triggered, active high. Returns false when no IOAPIC serves `gsi`.
pub fn route_gsi(gsi: u32, vector: u8) -> bool {
    let Some(&(base, first)) = IOAPICS.iter().find(|(_, first)| gsi >= *first && gsi < first + IOAPIC_PINS) else {
        return false;
    };
    let pin = gsi - first;
    ioapic_write(base, 0x11 + 2 * pin, u32::from(lapic_id()) << 24);
    ioapic_write(base, 0x10 + 2 * pin, u32::from(vector));
    true
}
