/*
 * unifw boot trampoline: 32-bit protected mode -> 64-bit long mode.
 *
 * Two ways in, one way on:
 *  - PVH (QEMU -kernel on microvm, or q35/pc with qboot): entered at
 *    pvh_entry in 32-bit protected mode, paging off, EBX = hvm_start_info.
 *  - Multiboot2 (GRUB): entered at the ELF entry point mb2_entry, same mode,
 *    EAX = 0x36d76289, EBX = multiboot2 information.
 * Both zero .bss, identity-map the first 4 GiB with 2 MiB pages (RAM, the
 * kernel image, and the MMIO windows of virtio-mmio, PCI BARs, IOAPIC and
 * LAPIC), enable long mode and call kernel_entry(magic, info) in Rust.
 * The page tables are built once here and never rewritten (nested KVM
 * without nested paging punishes page-table writes).
 *
 * Application processors (the other vCPUs) start in 16-bit real mode at
 * ap_trampoline, which the kernel copies below 1 MiB (AP_TRAMPOLINE) before
 * it sends them INIT and STARTUP: real -> protected -> long mode on the
 * same page tables, then ap_entry in Rust on the stack the boot CPU left in
 * AP_STACK_TOP (one AP starts at a time).
 */
    .set PVH_MAGIC, 0x336ec578
    .set MB2_HEADER_MAGIC, 0xe85250d6
    .set MB2_ARCH_I386, 0
    .set CR0_PE, 1 << 0
    .set CR0_PG, 1 << 31
    .set CR0_CD_NW, (1 << 30) | (1 << 29)
    .set CR4_PAE, 1 << 5
    .set CR4_OSFXSR, 1 << 9
    .set EFER_MSR, 0xc0000080
    .set EFER_LME, 1 << 8
    .set EFER_NXE, 1 << 11
    .set PAGE_PRESENT_WRITABLE, 0x3
    /* Physical page the AP trampoline runs from (kernel::arch::smp). */
    .set AP_TRAMPOLINE, 0x8000
    .set PAGE_HUGE, 0x80
    /* Accessed and dirty preset: the MMU (or a shadow-paging hypervisor)
       never has to write them back. */
    .set PAGE_ACCESSED_DIRTY, 0x60

/* From 32-bit protected mode to long mode on the boot page tables (the
   boot CPU, and each other CPU from its trampoline): PAE and SSE on,
   CR3, EFER.LME, then paging on and caches on (the loader may leave
   CR0.CD/NW set from reset, which makes every memory access uncached).
   A far jump to a 64-bit code segment follows. Clobbers eax, ecx, edx. */
/* In long mode: the flat data segment (0x10 in both GDTs) in DS, ES and
   SS, and FS and GS null. Clobbers eax. */
.macro LOAD_DATA_SEGMENTS
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
.endm

.macro ENTER_LONG_MODE
    mov %cr4, %eax
    or $(CR4_PAE | CR4_OSFXSR), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $EFER_MSR, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    and $~CR0_CD_NW, %eax
    or $(CR0_PG | CR0_PE), %eax
    mov %eax, %cr0
.endm

/* Multiboot2 header: must be 8-byte aligned within the first 32 KiB. */
    .section .multiboot2, "a"
    .p2align 3
mb2_header_start:
    .long MB2_HEADER_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header_start
    .long -(MB2_HEADER_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header_start))
    /* end tag */
    .short 0
    .short 0
    .long 8
mb2_header_end:

/* PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18), in a PT_NOTE aligned to 4. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry

    .section .text.boot32, "ax"
    .code32
    .global pvh_entry
pvh_entry:
    cli
    cld
    mov $PVH_MAGIC, %esi
    mov %ebx, %ebp
    jmp boot32_common

    .global mb2_entry
mb2_entry:
    cli
    cld
    mov %eax, %esi
    mov %ebx, %ebp

boot32_common:
    /* Zero .bss (stack, page tables and Rust statics live there). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    mov $boot_stack_top, %esp

    /* PML4[0] -> PDPT */
    mov $boot_pdpt, %eax
    or $(PAGE_PRESENT_WRITABLE | 0x20), %eax
    mov %eax, boot_pml4

    /* PDPT[0..4] -> PD[0..4] */
    mov $boot_pd, %eax
    or $(PAGE_PRESENT_WRITABLE | 0x20), %eax
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(, %ecx, 8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* PD entries: 2048 x 2 MiB identity pages covering 0 .. 4 GiB. */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $(PAGE_PRESENT_WRITABLE | PAGE_HUGE | PAGE_ACCESSED_DIRTY), %eax
    mov %eax, boot_pd(, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    ENTER_LONG_MODE

    lgdt boot_gdt_pointer
    ljmp $0x08, $boot64

    .code64
boot64:
    LOAD_DATA_SEGMENTS
    mov $boot_stack_top, %rsp
    /* kernel_entry(magic: u32 in edi, info: u32 in esi); never returns. */
    mov %esi, %edi
    mov %ebp, %esi
    xor %ebp, %ebp
    call kernel_entry
3:  hlt
    jmp 3b

/* Application processors: copied to AP_TRAMPOLINE and entered there in
   real mode (CS:IP = 0800:0000), so every address below is computed for
   that place. */
    .section .rodata.ap_trampoline, "a"
    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (AP_TRAMPOLINE + ap_gdt_pointer - ap_trampoline_start)
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(AP_TRAMPOLINE + ap_protected - ap_trampoline_start)
    .code32
ap_protected:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    ENTER_LONG_MODE
    ljmp $0x18, $ap_boot64
    .p2align 3
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00af9a000000ffff    /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdt_pointer:
    .short ap_gdt_end - ap_gdt - 1
    .long AP_TRAMPOLINE + ap_gdt - ap_trampoline_start
ap_trampoline_end:

    .section .text.boot32, "ax"
    .code64
ap_boot64:
    LOAD_DATA_SEGMENTS
    mov AP_STACK_TOP(%rip), %rsp
    xor %ebp, %ebp
    call ap_entry
4:  hlt
    jmp 4b

    .section .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .p2align 4
boot_stack_bottom:
    .skip 1024 * 1024
    .global boot_stack_top
boot_stack_top:
