//! Interrupt descriptor table on stable Rust. The `x86-interrupt` ABI is
//! nightly-only, so entry stubs are written in assembly: exceptions save the
//! registers and call `exception_handler` (fatal: it panics with the
//! details); device and timer interrupts save the caller-saved registers,
//! call `interrupt_handler`, and return with `iretq`.

use super::apic;
use super::gdt::DOUBLE_FAULT_IST_INDEX;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

/// Vector raised by NIC interrupts (MSI-X messages and IOAPIC pins).
pub const NIC_VECTOR: u8 = 0x30;
/// Vector of the local APIC one-shot timer.
pub const TIMER_VECTOR: u8 = 0x31;
/// Vector of the inter-processor interrupt that wakes a halted CPU (work
/// was handed to it, or a frame arrived for its queues).
pub const WAKE_VECTOR: u8 = 0x32;
/// Spurious-interrupt vector of the local APIC.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Interrupts taken, by kind (for the status report).
pub static NIC_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken.
pub static TIMER_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Wake-up IPIs taken.
pub static WAKE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .macro EXC_NOERR n
    exc_stub_\n:
        push $0
        push $\n
        jmp exception_common
    .endm
    .macro EXC_ERR n
    exc_stub_\n:
        push $\n
        jmp exception_common
    .endm
    .macro IRQ n
    irq_stub_\n:
        push %rax
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %r8
        push %r9
        push %r10
        push %r11
        mov $\n, %edi
        call interrupt_handler
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rdi
        pop %rsi
        pop %rdx
        pop %rcx
        pop %rax
        iretq
    .endm

    .section .text.interrupts, "ax"
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    EXC_NOERR \n
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    EXC_ERR \n
    .endr
    IRQ 48
    IRQ 49
    IRQ 50
    IRQ 255

    exception_common:
        push %rax
        push %rbx
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %rbp
        push %r8
        push %r9
        push %r10
        push %r11
        push %r12
        push %r13
        push %r14
        push %r15
        mov %rsp, %rdi
        and $-16, %rsp
        call exception_handler
        ud2

    .section .rodata.interrupts, "a"
    .p2align 3
    .global unifw_exception_stubs
    unifw_exception_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_stub_\n
    .endr
    .global unifw_irq_stubs
    unifw_irq_stubs:
    .quad irq_stub_48
    .quad irq_stub_49
    .quad irq_stub_50
    .quad irq_stub_255
    "#,
    options(att_syntax)
);

extern "C" {
    static unifw_exception_stubs: [u64; 32];
    static unifw_irq_stubs: [u64; 4];
}

/// Registers saved by `exception_common`, lowest address first.
#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Builds and loads the IDT (the boot CPU; the others share it, [`load`]).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: the stub tables are defined in the assembly above and hold
        // addresses of valid entry stubs that end in a diverging call
        // (exceptions) or `iretq` (interrupts).
        let (exceptions, irqs) = unsafe { (&unifw_exception_stubs, &unifw_irq_stubs) };
        for (vector, &stub) in exceptions.iter().enumerate() {
            let addr = VirtAddr::new(stub);
            // SAFETY: see above; the stubs follow the interrupt calling convention.
            let options = unsafe {
                match vector {
                    0 => idt.divide_error.set_handler_addr(addr),
                    1 => idt.debug.set_handler_addr(addr),
                    2 => idt.non_maskable_interrupt.set_handler_addr(addr),
                    3 => idt.breakpoint.set_handler_addr(addr),
                    4 => idt.overflow.set_handler_addr(addr),
                    5 => idt.bound_range_exceeded.set_handler_addr(addr),
                    6 => idt.invalid_opcode.set_handler_addr(addr),
                    7 => idt.device_not_available.set_handler_addr(addr),
                    8 => idt.double_fault.set_handler_addr(addr),
                    10 => idt.invalid_tss.set_handler_addr(addr),
                    11 => idt.segment_not_present.set_handler_addr(addr),
                    12 => idt.stack_segment_fault.set_handler_addr(addr),
                    13 => idt.general_protection_fault.set_handler_addr(addr),
                    14 => idt.page_fault.set_handler_addr(addr),
                    16 => idt.x87_floating_point.set_handler_addr(addr),
                    17 => idt.alignment_check.set_handler_addr(addr),
                    18 => idt.machine_check.set_handler_addr(addr),
                    19 => idt.simd_floating_point.set_handler_addr(addr),
                    20 => idt.virtualization.set_handler_addr(addr),
                    21 => idt.cp_protection_exception.set_handler_addr(addr),
                    28 => idt.hv_injection_exception.set_handler_addr(addr),
                    29 => idt.vmm_communication_exception.set_handler_addr(addr),
                    30 => idt.security_exception.set_handler_addr(addr),
                    _ => continue,
                }
            };
            if vector == 8 {
                // SAFETY: the IST slot is set up by gdt::init before the IDT is used.
                unsafe { options.set_stack_index(DOUBLE_FAULT_IST_INDEX) };
            }
        }
        for (&vector, &stub) in [NIC_VECTOR, TIMER_VECTOR, WAKE_VECTOR, SPURIOUS_VECTOR].iter().zip(irqs) {
            // SAFETY: see above.
            unsafe { idt[vector].set_handler_addr(VirtAddr::new(stub)) };
        }
        idt
    });
    idt.load();
}

/// Loads the IDT the boot CPU built on this CPU.
pub fn load() {
    if let Some(idt) = IDT.get() {
        idt.load();
    }
}

#[no_mangle]
extern "C" fn interrupt_handler(vector: u64) {
    match vector as u8 {
        NIC_VECTOR => {
            NIC_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            super::smp::wake_if_frames();
        }
        TIMER_VECTOR => {
            TIMER_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        }
        WAKE_VECTOR => {
            WAKE_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        }
        // Spurious interrupts must not be acknowledged.
        _ => return,
    }
    apic::end_of_interrupt();
}

#[no_mangle]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    if frame.vector == 2 && crate::kernel::panic::stopping() {
        // Another vCPU panicked and stops this one (smp::stop_others).
        super::cpu::halt_forever();
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    panic!(
        "CPU exception {} (error code {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}, rflags {:#x}, cs {:#x}, ss {:#x}, rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        frame.vector, frame.error_code, frame.rip, frame.rsp, cr2, frame.rflags, frame.cs,
        frame.ss, frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    );
}
