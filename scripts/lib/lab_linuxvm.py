"""Lab test `linux-vm`: the "VM" baseline of scripts/bench (linux_vm.py:
Debian's kernel, busybox and iptables-legacy in a minimal initramfs) built
with tests/lab/linux-vm.ipt, booted in unifw's place (microvm, the lab's
taps, lab.choose_accel) and probed as fw-basic probes unifw: the ready line
names the rules, allowed flows pass with their replies (conntrack), denied
ones time out, rejections are refused, ping passes.
"""

import lab
import linux_vm
from lab_tests import RECEIVER_HOST, SENDER_HOST, expect_flow, expect_ping_through, fw_serve

RULES = "tests/lab/linux-vm.ipt"
RULE_COUNT = 6
READY_S = 60


def linux_vm_test(run):
    """Builds, boots and probes the Linux VM baseline."""
    print(f"lab: the Linux VM baseline (Debian kernel, busybox, iptables-legacy) with {RULES}")
    vmlinuz, initrd, seconds = linux_vm.build(lab.ROOT / RULES, run.log_dir / "linux-vm.initrd")
    run.ok(f"linux-vm: image built in {seconds:.1f} s (kernel {vmlinuz.stat().st_size // 1000} kB, "
           f"initramfs {initrd.stat().st_size // 1000} kB)")
    run.console = run.log_dir / "linux-vm.log"
    run.lab.up(2)
    saved = lab.os.environ.get("UNIFW_MEM")
    lab.os.environ["UNIFW_MEM"] = linux_vm.memory(lab.ROOT / RULES)
    try:
        command = linux_vm.qemu_command("microvm", lab.choose_accel(), run.lab.taps[:2], vmlinuz, initrd,
                                        serial=f"file:{run.console}")
    finally:
        if saved is None:
            del lab.os.environ["UNIFW_MEM"]
        else:
            lab.os.environ["UNIFW_MEM"] = saved
    qemu = run.lab.boot(command, console=run.console)
    run.lab.attach(60)
    ready = linux_vm.wait_ready(run.console, qemu, READY_S)
    run.check(f"({RULE_COUNT} rules," in ready, f"linux-vm: {ready}")
    if not (run.lab.ping(run.lab.sender, lab.FIREWALL[0], 20) and fw_serve(run)):
        run.fail("linux-vm: the guest does not answer on 10.1.0.1")
        return
    s, r = run.lab.sender, run.lab.receiver
    for port in (5001, 5002):
        expect_flow(run, s, "tcp", RECEIVER_HOST, port, "ok", f"linux-vm: tcp {port} sender->receiver accepted")
    expect_flow(run, s, "udp", RECEIVER_HOST, 5001, "ok", "linux-vm: udp 5001 sender->receiver, reply by conntrack")
    expect_flow(run, r, "tcp", SENDER_HOST, 5001, "timeout", "linux-vm: tcp 5001 receiver->sender dropped")
    expect_flow(run, r, "udp", SENDER_HOST, 5001, "timeout", "linux-vm: udp 5001 receiver->sender dropped")
    expect_flow(run, s, "tcp", RECEIVER_HOST, 5004, "timeout", "linux-vm: tcp 5004 dropped by the policy")
    expect_flow(run, s, "tcp", RECEIVER_HOST, 5003, "refused", "linux-vm: tcp 5003 rejected with tcp-reset")
    expect_flow(run, s, "udp", RECEIVER_HOST, 5003, "refused", "linux-vm: udp 5003 rejected with port-unreachable")
    expect_ping_through(run, s, RECEIVER_HOST, "linux-vm: sender pings the receiver through the guest")
    run.expect_no_console("Unknown symbol|FAILED|Kernel panic", "linux-vm: every module loaded, no panic")
