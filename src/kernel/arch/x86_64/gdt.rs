//! Global descriptor table and task state segment (with a separate stack
//! for double faults, so a stack overflow still prints an epitaph). Each CPU
//! has its own: a TSS is marked busy when loaded, so two CPUs cannot share
//! one; the boot CPU's are static, the others' come from the heap.

use alloc::boxed::Box;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot used by the double-fault handler.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

const FAULT_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct FaultStack([u8; FAULT_STACK_SIZE]);

static mut FAULT_STACK: FaultStack = FaultStack([0; FAULT_STACK_SIZE]);
static TSS: Once<TaskStateSegment> = Once::new();
type Table = (GlobalDescriptorTable, [SegmentSelector; 3]);
static GDT: Once<Table> = Once::new();

fn task_state(fault_stack: VirtAddr) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = fault_stack + FAULT_STACK_SIZE as u64;
    tss
}

fn table(tss: &'static TaskStateSegment) -> Table {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss = gdt.append(Descriptor::tss_segment(tss));
    (gdt, [code, data, tss])
}

/// Builds and loads the boot CPU's GDT and TSS. Call once, early.
pub fn init() {
    let tss = TSS.call_once(|| task_state(VirtAddr::from_ptr(&raw const FAULT_STACK)));
    load(GDT.call_once(|| table(tss)));
}

/// Builds and loads another CPU's GDT and TSS (with its own fault stack),
/// from the heap, kept for good.
pub fn init_other_cpu() {
    let stack: &'static mut FaultStack = Box::leak(Box::new(FaultStack([0; FAULT_STACK_SIZE])));
    let tss: &'static TaskStateSegment = Box::leak(Box::new(task_state(VirtAddr::from_ptr(stack))));
    load(Box::leak(Box::new(table(tss))));
}

fn load((gdt, selectors): &'static Table) {
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which is 'static.
    unsafe {
        CS::set_reg(selectors[0]);
        DS::set_reg(selectors[1]);
        ES::set_reg(selectors[1]);
        SS::set_reg(selectors[1]);
        load_tss(selectors[2]);
    }
}
