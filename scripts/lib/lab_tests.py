"""The lab tests of scripts/test: unifw booted in QEMU in the lab (lab.py)
and checked from the lab's namespaces with real traffic.

Every test has a name (`TESTS`, in the order `scripts/test --lab` runs
them), so `scripts/test --lab dhcp` runs one. A test prints a header line,
then "  ok   WHAT" or "  FAIL WHAT" for each check; a failure shows the tail
of the serial console. Consoles and helper logs stay in LABTEST_LOG_DIR
(default a new /tmp/unifw-labtest.XXXXXX). The lab is torn down after each
test, and on an exception, Ctrl-C or SIGTERM (lab.Lab).

Forwarding tests build their own image from an iptables-save ruleset in
tests/lab/ and probe it with scripts/lib/probe.py (echo servers, TCP/UDP
clients, an AF_PACKET sniffer); the differential test compares unifw with a
Linux namespace firewall loaded with the same file.
"""

import collections
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lab

DEFAULT_RULES = "rules/default.rules"
PROBE = str(lab.ROOT / "scripts" / "lib" / "probe.py")
ORDER_PROBE = str(lab.ROOT / "scripts" / "lib" / "order_probe.py")
GARBAGE = str(lab.ROOT / "scripts" / "lib" / "garbage.py")
# Ports the echo servers listen on (see tests/lab/fw-basic.ipt).
FW_PORTS = ("5001", "5002", "5003", "5004", "5005")
SENDER_FW, RECEIVER_FW = lab.FIREWALL
SENDER_HOST, RECEIVER_HOST = lab.HOSTS


class LabRun:
    """One run of lab tests: the lab, where logs go, the failure count, the
    rules of the image in place, and the console of the current boot."""

    def __init__(self, the_lab, log_dir):
        """A run in THE_LAB (a lab.Lab already entered), logs in LOG_DIR."""
        self.lab = the_lab
        self.log_dir = Path(log_dir)
        self.failures = 0
        self.console = None
        self.image_rules = None
        self.boot_deadline = 60

    def image(self, rules):
        """Builds the kernel image from RULES unless it is already in place."""
        if rules != self.image_rules:
            lab.note(f"kernel image ({rules})")
            self.image_rules = None
            lab.build_kernel(rules)
            self.image_rules = rules

    def boot(self, name, machine, accel, append="", nics=2, iso=None, order=None, rx_queue=None, queues=None,
             cpus=None, **disk):
        """Boots in a fresh lab (console in LOG_DIR/NAME.log) and attaches
        the taps. ORDER (default 0, 1, ...) lists the taps in the order of
        the NICs on QEMU's command line (the sender's tap is 0). RX_QUEUE
        QUEUES and CPUS: `lab.qemu_command`'s (the taps get QUEUES too). DISK:
        `lab.qemu_command`'s disk, firmware, macs and root_ports (a UEFI
        variable store goes to LOG_DIR/NAME.vars)."""
        self.console = self.log_dir / f"{name}.log"
        self.lab.up(nics, queues=queues)
        if disk.get("firmware") == "uefi":
            disk["vars_file"] = self.log_dir / f"{name}.vars"
        taps = [self.lab.taps[index] for index in (order or range(nics))]
        command = lab.qemu_command(machine, accel, taps, iso=iso, append=append, serial=f"file:{self.console}",
                                   rx_queue=rx_queue, queues=queues, cpus=cpus, **disk)
        self.lab.boot(command, console=self.console)
        self.lab.attach(60)

    def console_text(self):
        """The serial console so far ("" before QEMU writes it)."""
        try:
            return self.console.read_text(errors="replace") if self.console else ""
        except FileNotFoundError:
            return ""

    # Verdicts.

    def ok(self, what):
        """One check passed."""
        print(f"  ok   {what}", flush=True)

    def fail(self, what):
        """One check failed: counted, with the console's last 40 lines."""
        print(f"  FAIL {what}", flush=True)
        self.failures += 1
        if self.console and self.console.exists():
            print(f"  --- console ({self.console}) ---")
            for line in self.console_text().splitlines()[-40:]:
                print(f"  | {line}")

    def check(self, passed, what):
        """ok or fail by PASSED; returns whether it passed."""
        if passed:
            self.ok(what)
        else:
            self.fail(what)
        return bool(passed)

    def expect_ping(self, ns, address, what, deadline=None):
        """ADDRESS answers from NS within the boot deadline."""
        self.check(self.lab.ping(ns, address, deadline or self.boot_deadline), what)

    def expect_no_ping(self, ns, address, what):
        """Nothing answers for 3 seconds."""
        self.check(self.lab.run(ns, ["ping", "-c3", "-i0.5", "-W1", "-q", address])[0] != 0, what)

    def expect_console(self, pattern, what, timeout=20):
        """The console shows PATTERN (a regex, line by line) within TIMEOUT s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.console_text(), re.MULTILINE):
                self.ok(what)
                return
            time.sleep(0.2)
        self.fail(f"{what} (console lacks /{pattern}/)")

    def expect_no_console(self, pattern, what):
        """The console does not show PATTERN."""
        if re.search(pattern, self.console_text(), re.MULTILINE):
            self.fail(f"{what} (console shows /{pattern}/)")
        else:
            self.ok(what)


# --- Boots ---------------------------------------------------------------------

def boot_ping(run, machine, accel, deadline=60):
    """Boots on MACHINE with ACCEL and pings both firewall addresses."""
    tag = f"{machine}/{accel}"
    print(f"lab: {machine} ({accel}): boot, ping eth0 and eth1")
    run.image(DEFAULT_RULES)
    run.boot(f"{machine}-{accel}", machine, accel)
    run.expect_ping(run.lab.sender, SENDER_FW, f"{tag}: sender pings 10.1.0.1 (eth0)", deadline)
    run.expect_ping(run.lab.receiver, RECEIVER_FW, f"{tag}: receiver pings 10.2.0.1 (eth1)", deadline)
    run.expect_no_console("PANIC|ERROR", f"{tag}: no errors on the console")


def boot_kvm(run):
    """The KVM path, kept working even where KVM is slow (kvm_pvm, see
    lab.choose_accel): skipped without a usable /dev/kvm."""
    if not lab.kvm_present():
        print("lab: no usable /dev/kvm; KVM boot skipped")
        return
    boot_ping(run, "microvm", "kvm", deadline=120)


def cmdline(run):
    """The kernel command line overrides the rules file, and a bad value
    leaves that NIC down with a message instead of a panic."""
    print("lab: kernel command line overrides")
    run.image(DEFAULT_RULES)
    receiver, sender = run.lab.receiver, run.lab.sender
    run.boot("cmdline-override", "microvm", "tcg", "unifw.eth1=10.2.0.9/24")
    run.expect_ping(receiver, "10.2.0.9", "unifw.eth1=10.2.0.9/24: receiver pings 10.2.0.9")
    run.expect_no_ping(receiver, RECEIVER_FW, "unifw.eth1=10.2.0.9/24: 10.2.0.1 is gone")

    run.boot("cmdline-bad", "microvm", "tcg", "unifw.eth1=10.2.0.1/33 unifw.colour=blue")
    run.expect_ping(sender, SENDER_FW, "bad eth1 value: eth0 still answers")
    run.expect_console(r"unifw\.eth1=10\.2\.0\.1/33.*left down", "bad eth1 value: clear message")
    run.expect_console(r"unifw\.colour=blue.*unknown unifw option", "unknown option: clear message")
    run.expect_console(r"eth1: down", "bad eth1 value: eth1 is down")
    run.expect_no_ping(receiver, RECEIVER_FW, "bad eth1 value: eth1 does not answer")
    run.expect_no_console("PANIC", "bad values: no panic")


def multiboot2(run):
    """GRUB (from an ISO, SeaBIOS, TCG: firmware is slow under this nested
    KVM) loads the same ELF through its Multiboot2 header."""
    print("lab: Multiboot2 through GRUB (q35, SeaBIOS, tcg)")
    run.image(DEFAULT_RULES)
    iso, tree = run.log_dir / "unifw-grub.iso", run.log_dir / "iso"
    (tree / "boot" / "grub").mkdir(parents=True, exist_ok=True)
    shutil.copy(lab.kernel_image(), tree / "boot" / "unifw")
    (tree / "boot" / "grub" / "grub.cfg").write_text(
        "set timeout=0\nmenuentry unifw {\n  multiboot2 /boot/unifw unifw.log=info\n  boot\n}\n")
    log = run.log_dir / "grub-mkrescue.log"
    with open(log, "w") as out:
        made = subprocess.run(["grub-mkrescue", "-o", str(iso), str(tree),
                               "--install-modules=multiboot2 normal configfile iso9660",
                               "--fonts=", "--locales=", "--themes="], stdout=out, stderr=out).returncode == 0
    if not made:
        run.fail(f"grub-mkrescue (see {log})")
        return
    run.boot("multiboot2", "q35", "tcg", iso=iso)
    run.expect_ping(run.lab.sender, SENDER_FW, "multiboot2: sender pings 10.1.0.1")
    run.expect_ping(run.lab.receiver, RECEIVER_FW, "multiboot2: receiver pings 10.2.0.1")
    run.expect_console("booted via Multiboot2", "multiboot2: entered through the Multiboot2 header")
    run.expect_console("command line: unifw.log=info", "multiboot2: command line from GRUB")


# Disks as Nova boots them (libvirt's domain for an instance): virtio-blk,
# virtio-net-pci with Neutron's fa:16:3e MACs (here in descending order, so
# that nothing can lean on MAC order), on pc with every device on bus 0, on
# q35 with each device behind its own PCI Express root port.
DISK_BOOTS = {
    "pc-seabios": ("pc", "bios", False, "raw"),
    "q35-seabios": ("q35", "bios", True, "qcow2"),
    "q35-uefi": ("q35", "uefi", True, "qcow2"),
}
CLOUD_MACS = ("fa:16:3e:9c:21:07", "fa:16:3e:11:aa:02")
DISK_DEADLINE = 120


def disk_images(run):
    """Scenario 1's images, made once per run by scripts/build-images in
    LOG_DIR/images (--raw too); returns (directory, identity) or raises."""
    out = run.log_dir / "images"
    log = run.log_dir / "build-images.log"
    if not (out / "unifw-1.qcow2").exists():
        lab.note("disk images (scripts/build-images 1 --raw)")
        status, output = lab.output_of([str(lab.ROOT / "scripts" / "build-images"), "1", "--raw", "--out", str(out)],
                                       timeout=900)
        run.image_rules = None  # target/'s kernel now holds scenario 1's rules
        log.write_text(output)
        if status != 0:
            raise lab.LabError(f"scripts/build-images failed (see {log})")
    found = re.search(r"^unifw-1 .* ([0-9a-f]{16})$", log.read_text(), re.M)
    if not found:
        raise lab.LabError(f"no identity in scripts/build-images' table (see {log})")
    return out, found.group(1)


def disk_boot(run, kind):
    """Boots scenario 1's disk image KIND (`DISK_BOOTS`) through firmware
    and GRUB, and checks both firewall addresses, traffic through it, the
    NIC order and the ruleset identity."""
    machine, firmware, root_ports, suffix = DISK_BOOTS[kind]
    topology = "root ports" if root_ports else "bus 0"
    print(f"lab: disk {kind}: {machine}, {firmware}, virtio-blk {suffix}, virtio-net-pci on {topology}, tcg")
    images, identity = disk_images(run)
    run.boot(f"disk-{kind}", machine, "tcg", disk=images / f"unifw-1.{suffix}", firmware=firmware, macs=CLOUD_MACS,
             root_ports=root_ports)
    run.expect_ping(run.lab.sender, SENDER_FW, f"{kind}: sender pings 10.1.0.1", DISK_DEADLINE)
    run.expect_ping(run.lab.receiver, RECEIVER_FW, f"{kind}: receiver pings 10.2.0.1", 20)
    run.expect_console("booted via Multiboot2", f"{kind}: entered through GRUB and Multiboot2")
    run.expect_console(f"identity {identity}", f"{kind}: the kernel reports the identity build-images printed")
    first, second = CLOUD_MACS
    run.expect_console(f"eth0: NIC 0, mac {first} \\(in discovery order\\)",
                       f"{kind}: eth0 is the first NIC on the command line")
    run.expect_console(f"eth1: NIC 1, mac {second} \\(in discovery order\\)", f"{kind}: eth1 is the second")
    if fw_serve(run):
        expect_flow(run, run.lab.sender, "tcp", RECEIVER_HOST, 5001, "ok", f"{kind}: TCP sender->receiver passes")
        expect_flow(run, run.lab.receiver, "udp", SENDER_HOST, 5002, "ok", f"{kind}: UDP receiver->sender passes")
    expect_ping_through(run, run.lab.sender, RECEIVER_HOST, f"{kind}: sender pings the receiver through it")
    run.expect_no_console("PANIC|ERROR", f"{kind}: no errors on the console")


# --- Traffic through the default image ---------------------------------------------

def sustained_stream(run):
    """More than 65,536 frames each way (virtio ring indices wrap at 16
    bits; virtio-drivers' event-index check once froze the stream right
    there), with notifications suppressed by event index (the default) and
    by the rings' flags (`unifw.eventidx=off`). Without offloads every TCP
    segment is one frame, so 3 s of iperf3 moves well past the wrap; the
    counter report then shows notifications the devices declined."""
    run.image(DEFAULT_RULES)
    # The flags run has 1,024-entry receive queues (QEMU's rx_queue_size)
    # on legacy virtio-pci, whose size the driver must take; virtio-mmio
    # offers 1,024 for both queues whatever rx_queue_size says.
    for mode, append, machine, rx, tx in (("event index", "", "microvm", 1024, 1024),
                                          ("flags", " unifw.eventidx=off", "pc-legacy", 1024, 256)):
        print(f"lab: a TCP stream of more than 65,536 frames (offloads off, notifications by {mode}, "
              f"{machine}, rings of {rx} and {tx})")
        name = "stream" if not append else "stream-flags"
        run.boot(name, machine, "tcg", "unifw.offload=off unifw.stats=1" + append,
                 rx_queue=rx if machine != "microvm" else None)
        run.expect_console(f"notifications by {mode}, rings rx {rx} tx {tx}$",
                           f"{name}: NICs negotiated notifications by {mode}, rings of {rx} and {tx}")
        run.expect_ping(run.lab.sender, SENDER_FW, f"{name}: firewall up")
        server = run.lab.start(["timeout", "30", "iperf3", "-s", "-1", "-J"], ns=run.lab.receiver,
                               out=run.log_dir / f"{name}-server.json")
        time.sleep(0.5)
        _, report = run.lab.run(run.lab.sender, ["timeout", "30", "iperf3", "-c", RECEIVER_HOST, "-t", "3", "-J"],
                                merge=False)
        try:
            received = int(json.loads(report)["end"]["sum_received"]["bytes"])
        except (ValueError, KeyError, TypeError):
            received = 0
        run.lab.stop([server])
        # 65,536 full-size segments carry 65,536 * 1448 bytes.
        if received > 65536 * 1448:
            run.ok(f"{name}: {received // 1000000} MB arrived (more than 65,536 frames)")
        else:
            run.fail(f"{name}: only {received} bytes arrived")
        run.expect_console(r"NICs notified \d+ times, [1-9]\d* not \(they asked\)",
                           f"{name}: the devices declined notifications while busy")
        run.expect_no_console("PANIC|ERROR", f"{name}: no errors on the console")


def multiqueue(run):
    """NICs offering 4 queue pairs (`queues=4` taps, virtio-net `mq=on`) to
    a kernel that asks for one pair per polling CPU (one here): it does not
    negotiate multiqueue, says 4 were offered and 1 kept, and traffic
    passes as with single-queue NICs, on virtio-mmio, legacy virtio-pci
    and modern virtio-pci."""
    run.image(DEFAULT_RULES)
    for machine in ("microvm", "pc-legacy", "q35"):
        name = f"multiqueue-{machine}"
        print(f"lab: {machine}, NICs offering 4 queue pairs, one vCPU")
        run.boot(name, machine, "tcg", queues=4)
        for index in (0, 1):
            run.expect_console(f"NIC {index}: virtio-net .*, queue pairs 1 of 4$",
                               f"{name}: NIC {index} was offered 4 queue pairs and kept 1")
        run.expect_ping(run.lab.sender, SENDER_FW, f"{name}: sender pings 10.1.0.1 (eth0)")
        run.expect_ping(run.lab.receiver, RECEIVER_FW, f"{name}: receiver pings 10.2.0.1 (eth1)", 20)
        expect_ping_through(run, run.lab.sender, RECEIVER_HOST, f"{name}: sender pings the receiver through it")
        if fw_serve(run):
            expect_flow(run, run.lab.sender, "tcp", RECEIVER_HOST, 5001, "ok", f"{name}: TCP sender->receiver passes")
            expect_flow(run, run.lab.receiver, "udp", SENDER_HOST, 5002, "ok", f"{name}: UDP receiver->sender passes")
        run.expect_no_console("PANIC|ERROR|WARN", f"{name}: no errors or warnings on the console")


def vcpus(run):
    """Two vCPUs and NICs with two queue pairs: each vCPU serves its own
    pair of both NICs (a worker on vCPU 1). 16 numbered UDP flows (2,000
    datagrams each, 4,000/s) spread over both pairs by the host's
    steering must arrive whole and in order per flow, and both vCPUs must
    have received frames (the counter report). Then on modern and legacy
    virtio-pci, where pair 1's MSI-X entries are aimed at vCPU 1: the
    same flows (200 datagrams each) with no wake-up relayed by vCPU 0,
    and TCP; on microvm (virtio-mmio), at most one wake-up relayed per
    frame vCPU 1 received. Then NICs with unequal pair counts (eth0 2,
    eth1 1: eth0 is reduced to 1, one vCPU serves, the flows arrive) and
    two vCPUs on single-queue NICs (one serves)."""
    run.image(DEFAULT_RULES)
    print("lab: microvm, 2 vCPUs, 2 queue pairs per NIC: numbered flows through both")
    run.boot("vcpus-microvm", "microvm", "tcg", append="unifw.stats=1", queues=2, cpus=2)
    run.expect_console(r"vCPUs: 2 of 2 online", "vcpus: both vCPUs started")
    run.expect_console(r"vCPUs: 2 serve NICs", "vcpus: both serve NICs")
    for index in (0, 1):
        run.expect_console(f"NIC {index}: virtio-net .*, queue pairs 2 of 2$", f"vcpus: NIC {index} uses 2 queue pairs")
    run.expect_ping(run.lab.sender, SENDER_FW, "vcpus: sender pings 10.1.0.1 (eth0)")
    run.expect_ping(run.lab.receiver, RECEIVER_FW, "vcpus: receiver pings 10.2.0.1 (eth1)", 20)
    expect_ping_through(run, run.lab.sender, RECEIVER_HOST, "vcpus: sender pings the receiver through it")
    if numbered_flows(run, "vcpus", 2000):
        # virtio-mmio: vCPU 0 relays the worker's wake-ups, at most one per
        # sleep of the worker, so never more than its frames (before that
        # change: 74,965 for 20,018 frames).
        found = re.findall(r", 1: (\d+) [^;]*; woken for their frames by vCPU 0 (\d+) times", run.console_text())
        frames, relayed = (int(n) for n in found[-1]) if found else (0, -1)
        run.check(0 <= relayed <= frames,
                  f"vcpus: vCPU 0 relayed at most one wake-up per frame of vCPU 1 ({relayed} for {frames} frames)")
    run.expect_no_console("PANIC|ERROR|WARN", "vcpus: no errors or warnings on the console")
    for machine in ("q35", "pc-legacy"):
        name = f"vcpus-{machine}"
        print(f"lab: {machine}, 2 vCPUs, 2 queue pairs per NIC")
        run.boot(name, machine, "tcg", append="unifw.stats=1", queues=2, cpus=2)
        run.expect_console(r"vCPUs: 2 serve NICs", f"{name}: both vCPUs serve NICs")
        run.expect_console(r"vCPU 1: receive interrupts of eth0, eth1 come here \(MSI-X\)",
                           f"{name}: pair 1's MSI-X entries are aimed at vCPU 1")
        run.expect_ping(run.lab.sender, SENDER_FW, f"{name}: sender pings 10.1.0.1 (eth0)")
        expect_ping_through(run, run.lab.sender, RECEIVER_HOST, f"{name}: sender pings the receiver through it")
        if numbered_flows(run, name, 200):
            relayed = re.findall(r"woken for their frames by vCPU 0 (\d+) times", run.console_text())
            run.check(relayed and relayed[-1] == "0",
                      f"{name}: vCPU 1 woke by its own interrupts, none relayed by vCPU 0 ({relayed[-1:]})")
        if fw_serve(run):
            for port in FW_PORTS:
                expect_flow(run, run.lab.sender, "tcp", RECEIVER_HOST, int(port), "ok",
                            f"{name}: TCP sender->receiver port {port} passes")
        run.expect_no_console("PANIC|ERROR|WARN", f"{name}: no errors or warnings on the console")
    print("lab: q35, 2 vCPUs, eth0 with 2 queue pairs and eth1 with 1")
    run.boot("vcpus-unequal", "q35", "tcg", append="unifw.stats=1", queues=[2, 1], cpus=2)
    run.expect_console(r"NIC 0: queue pairs reduced to 1, as many as every NIC has",
                       "vcpus-unequal: eth0 is told to use 1 queue pair, as many as eth1 has")
    run.expect_console(r"vCPUs: 1 serve NICs \(one queue pair each\); the others idle: a NIC has fewer queue pairs",
                       "vcpus-unequal: one vCPU serves, and the console says why the other idles")
    expect_ping_through(run, run.lab.sender, RECEIVER_HOST, "vcpus-unequal: sender pings the receiver through it")
    numbered_flows(run, "vcpus-unequal", 200, workers=False)
    run.expect_no_console("PANIC|ERROR", "vcpus-unequal: no errors on the console")
    print("lab: microvm, 2 vCPUs, single-queue NICs")
    run.boot("vcpus-single-queue", "microvm", "tcg", cpus=2)
    run.expect_console(r"vCPUs: 1 serve NICs \(one queue pair each\); the others idle",
                       "vcpus single-queue: one vCPU serves, the other idles")
    expect_ping_through(run, run.lab.sender, RECEIVER_HOST, "vcpus single-queue: sender pings the receiver through it")
    run.expect_no_console("PANIC|ERROR|WARN", "vcpus single-queue: no errors or warnings on the console")


def panic_vcpu(run):
    """A panic on one vCPU stops them all. `unifw.crashtest=1` makes vCPU
    1 panic as it starts serving: the console has its panic, the panic
    handler stops vCPU 0 with an NMI and halts, and the firewall answers
    nothing. (Before, vCPU 0 went on answering and forwarding the flows
    the host steered to its queues while those steered to vCPU 1's were
    lost, and a health check saw nothing wrong.)"""
    run.image(DEFAULT_RULES)
    print("lab: microvm, 2 vCPUs, 2 queue pairs, unifw.crashtest=1")
    run.boot("panic-vcpu", "microvm", "tcg", append="unifw.crashtest=1", queues=2, cpus=2)
    run.expect_console(r"PANIC at src/kernel/worker.rs:\d+: unifw.crashtest=1: vCPU 1 panics",
                       "panic-vcpu: vCPU 1 panics, as asked (the epitaph whole, on its own line)")
    run.expect_console(r"unifw: the other vCPUs are stopped", "panic-vcpu: the panic handler stops the other vCPUs")
    run.expect_console(r"unifw: halted", "panic-vcpu: then halts")
    run.expect_no_ping(run.lab.sender, SENDER_FW, "panic-vcpu: vCPU 0 is stopped too: 10.1.0.1 does not answer")
    run.expect_no_console("panic inside the panic handler", "panic-vcpu: vCPU 0 stops without a panic of its own")


def numbered_flows(run, name, count, workers=True):
    """16 numbered UDP flows of `count` datagrams each (4,000/s) from the
    sender to the receiver through a 2-vCPU firewall booted with
    `unifw.stats=1`: all must arrive, none reordered or repeated, and
    (WORKERS: vCPU 1 serves queue pairs) both vCPUs must have received
    frames (the counter report). True if all held."""
    log = run.log_dir / f"{name}-recv.log"
    receiver = run.lab.start(["python3", ORDER_PROBE, "recv", "5003", "--idle", "3"], ns=run.lab.receiver, out=log)
    if not wait_for_line(log, "listening"):
        run.fail(f"{name}: the numbered-flow receiver did not start")
        return False
    flows = 16
    _, sent = run.lab.run(run.lab.sender, ["python3", ORDER_PROBE, "send", RECEIVER_HOST, "5003", "--flows",
                                           str(flows), "--count", str(count), "--rate", "4000"], timeout=120)
    receiver.wait(timeout=30)
    lines = log.read_text().splitlines()
    try:
        got = json.loads(lines[-1])
    except (IndexError, ValueError):
        run.fail(f"{name}: no summary from the receiver ({lines[-1:]}; sender: {sent.strip()})")
        return False
    received = sum(f["received"] for f in got.values())
    reordered = sum(f["reordered"] for f in got.values())
    repeats = sum(f["repeats"] for f in got.values())
    ok = run.check(len(got) == flows and received == flows * count,
                   f"{name}: {received} of {flows * count} datagrams on {len(got)} of {flows} flows arrived")
    ok &= run.check(reordered == 0 and repeats == 0, f"{name}: none reordered ({reordered}) or repeated ({repeats})")
    if not workers:
        return ok
    time.sleep(1.5)
    found = re.findall(r"vCPUs: frames received by each: 0: (\d+)[^,]*, 1: (\d+)", run.console_text())
    both = bool(found) and all(int(n) > 0 for n in found[-1])
    ok &= run.check(both, f"{name}: both vCPUs received frames ({found[-1] if found else 'no report'})")
    return ok


def first_packets(run):
    """The first packets to a host the firewall has not resolved yet arrive
    at once, as through Linux. A Linux sender leaves TCP and UDP checksums
    partial (checksum offload); a frame that waits for ARP is copied into
    the neighbour queue without its virtio header, so unifw completes the
    checksum there. Without that the receiver drops it: the first UDP
    datagram is lost and a TCP connection waits 1 s for its SYN again.
    The receiver never talked to the firewall before the UDP probe, and
    the TCP probe goes to a second address of it, never ARPed. (UDP needs
    the receiver's main address: its echo server answers from that one.)"""
    print("lab: first packets to unresolved hosts (partial checksums in the neighbour queue)")
    run.image(DEFAULT_RULES)
    run.boot("first-packets", "microvm", lab.choose_accel())
    run.expect_ping(run.lab.sender, SENDER_FW, "first packets: firewall up")
    run.lab.ip("-n", run.lab.receiver, "addr", "add", "10.2.0.4/24", "dev", run.lab.taps[1])
    log = run.log_dir / "first-packets-serve.log"
    run.lab.start(["python3", PROBE, "serve", "5001"], ns=run.lab.receiver, out=log)
    if not wait_for_line(log, "serving"):
        run.fail("first packets: echo server did not start")
        return
    # Under 1 s: no retransmission can have helped (UDP has none; TCP's
    # first SYN retransmission comes after 1 s).
    for kind, address in (("udp", RECEIVER_HOST), ("tcp", "10.2.0.4")):
        _, out = run.lab.run(run.lab.sender, ["python3", PROBE, kind, address, "5001", "-t", "0.9"])
        got = (out.strip().splitlines() or [""])[-1]
        run.check(got == "ok", f"first packets: the first {kind.upper()} exchange with {address} "
                               f"completes within 0.9 s ({got})")


def dhcp(run):
    """The management NIC (eth2, third on the command line) configured by
    DHCP from dnsmasq in the management namespace: forwarding waits for
    the lease (fail closed), the router option becomes the default route,
    the firewall answers ping on the leased address, and renews its lease
    at T1 (10 s here). DHCP replies come from a host with checksum
    offload, so this also covers completing partial checksums before
    smoltcp."""
    print(f"lab: eth2 by DHCP (dnsmasq in {run.lab.mgmt})")
    run.image(DEFAULT_RULES)
    run.boot("dhcp", "microvm", "tcg", nics=3)
    run.lab.attach_mgmt(60)
    run.expect_ping(run.lab.sender, SENDER_FW, "dhcp: eth0 answers while eth2 waits for its lease")
    run.expect_console(r"forwarding: off until eth2 has an address", "dhcp: the console says forwarding waits")
    run.expect_no_ping(run.lab.sender, RECEIVER_HOST, "dhcp: nothing is forwarded before the lease")
    run.lab.serve_dhcp(run.log_dir, options=("3,10.3.0.1", "option:T1,10", "option:T2,20"))
    leased_pattern = r"eth2: DHCP address (10\.3\.0\.5[0-9])/24; routes default via 10\.3\.0\.1 \(router option\)"
    run.expect_console(leased_pattern, "dhcp: eth2 leased an address, the router option is its default route", 30)
    leased = re.search(leased_pattern, run.console_text())
    if leased:
        run.expect_ping(run.lab.mgmt, leased.group(1), f"dhcp: the firewall answers on {leased.group(1)}")
    run.expect_console(r"forwarding: on \(eth0 10\.1\.0\.1/24, eth1 10\.2\.0\.1/24, eth2 10\.3\.0\.5[0-9]/24 by DHCP\)",
                       "dhcp: forwarding starts with the lease, and the console lists the addresses")
    expect_ping_through(run, run.lab.sender, RECEIVER_HOST, "dhcp: the sender pings the receiver through it")
    if leased:
        # rules/default.rules serves /metrics on eth2 to the management subnet.
        samples = scrape(run, f"the default rules' endpoint on the leased {leased.group(1)}",
                         at=(leased.group(1), "9100"))
        not_ready = value(samples or {}, "unifw_drops_total", interface="eth0", reason="not_ready") or 0
        run.check(not_ready >= 1, f"dhcp: the pings sent before the lease are counted as not_ready ({not_ready:.0f})")
    acks = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and acks < 2:
        time.sleep(1)
        try:
            acks = len(re.findall(r"DHCPACK\(", (run.log_dir / "dnsmasq.log").read_text(errors="replace")))
        except FileNotFoundError:
            pass
    run.check(acks >= 2, f"dhcp: the lease is renewed at T1 (dnsmasq acked {acks} requests)")
    run.expect_no_console(r"lease lost|forwarding: off:", "dhcp: the renewal keeps the address and forwarding")


# The cloud test's NICs (tests/lab/cloud.rules binds eth0, eth1, eth2 to
# them) and the order they have on QEMU's command line: management first,
# then the receiver's, then the sender's.
CLOUD_RULES = "tests/lab/cloud.rules"
CLOUD_BOUND = ("52:54:00:c1:00:10", "52:54:00:c1:00:11", "52:54:00:c1:00:12")
CLOUD_ORDER = (2, 1, 0)


def cloud(run):
    """Interfaces in a cloud (tests/lab/cloud.rules): NICs named by MAC
    whatever their order; the DHCP interface takes its static fallback
    when no server answers, and forwarding waits for it; a lease then
    replaces the fallback, and its classless static routes (option 121)
    win over its router option and route traffic. Then the same by
    `unifw.ethN.mac=` on the command line."""
    print("lab: NICs by MAC, DHCP fallback, option 121 routes, fail closed (tests/lab/cloud.rules)")
    run.image(CLOUD_RULES)
    macs = [CLOUD_BOUND[index] for index in CLOUD_ORDER]
    run.boot("cloud", "microvm", "tcg", nics=3, order=CLOUD_ORDER, macs=macs)
    run.lab.attach_mgmt(60)
    mgmt, sender = run.lab.mgmt, run.lab.sender
    for name, nic in (("eth0", 2), ("eth1", 1), ("eth2", 0)):
        mac = CLOUD_BOUND[int(name[-1])]
        run.expect_console(rf"{name}: NIC {nic}, mac {mac} \(bound by MAC\)",
                           f"cloud: {name} is NIC {nic} on the command line, found by its MAC")
    run.expect_ping(sender, SENDER_FW, "cloud: the sender pings eth0's address")
    run.expect_ping(run.lab.receiver, RECEIVER_FW, "cloud: the receiver pings eth1's address", 10)
    run.expect_console(r"forwarding: off until eth2 has an address", "cloud: forwarding waits for eth2")
    run.expect_no_ping(sender, RECEIVER_HOST, "cloud: nothing is forwarded while eth2 has no address")
    run.expect_console(r"eth2: no DHCP lease within 8 s; using the fallback 10\.3\.0\.9/24",
                       "cloud: no DHCP server: eth2 takes its fallback after 8 s", 20)
    run.expect_ping(mgmt, "10.3.0.9", "cloud: the firewall answers on the fallback address", 10)
    run.expect_console(r"forwarding: on \(.*eth2 10\.3\.0\.9/24 fallback\)", "cloud: forwarding starts on the fallback")
    expect_ping_through(run, sender, RECEIVER_HOST, "cloud: the sender pings the receiver through it")

    # A gateway for 10.9.0.0/24 in the management namespace, given by
    # option 121 alongside a router option that must lose.
    run.lab.ip("-n", mgmt, "addr", "add", "10.3.0.254/24", "dev", run.lab.taps[2])
    run.lab.ip("-n", mgmt, "addr", "add", "10.9.0.5/32", "dev", run.lab.taps[2])
    run.lab.serve_dhcp(run.log_dir, options=("3,10.3.0.1", "121,10.9.0.0/24,10.3.0.254"))
    leased_pattern = (r"eth2: DHCP address (10\.3\.0\.5[0-9])/24 \(replaces the fallback 10\.3\.0\.9/24\); "
                      r"routes 10\.9\.0\.0/24 via 10\.3\.0\.254 \(option 121; router option 10\.3\.0\.1 ignored\)")
    run.expect_console(leased_pattern, "cloud: a lease replaces the fallback; option 121 wins over the router option",
                       30)
    leased = re.search(leased_pattern, run.console_text())
    if leased:
        run.expect_ping(mgmt, leased.group(1), f"cloud: the firewall answers on the leased {leased.group(1)}", 10)
        run.lab.ip("-n", mgmt, "route", "add", "10.1.0.0/24", "via", leased.group(1))
        expect_ping_through(run, sender, "10.9.0.5", "cloud: 10.9.0.5 is reached through the option 121 route")
    run.expect_no_ping(mgmt, "10.3.0.9", "cloud: the fallback address is gone")
    run.expect_no_console("PANIC|ERROR", "cloud: no errors on the console")

    # The kernel command line binds names too (unifw.ethN.mac=), here for
    # the default image, whose rules bind nothing.
    run.image(DEFAULT_RULES)
    run.boot("cloud-cmdline", "microvm", "tcg", order=(1, 0), macs=CLOUD_BOUND[1::-1],
             append=f"unifw.eth0.mac={CLOUD_BOUND[0]} unifw.eth1.mac={CLOUD_BOUND[1]}")
    run.expect_ping(sender, SENDER_FW, "cloud: unifw.eth0.mac= names the second NIC eth0")
    run.expect_ping(run.lab.receiver, RECEIVER_FW, "cloud: unifw.eth1.mac= names the first NIC eth1", 10)
    expect_ping_through(run, sender, RECEIVER_HOST, "cloud: traffic passes with the NICs named on the command line")


METRICS_RULES = "tests/lab/metrics.rules"
SCRAPE = str(lab.ROOT / "scripts" / "lib" / "scrape.py")
# Debian's Python, whose python3-prometheus-client `lab.GROUPS["test"]`
# installs (a python3 earlier on PATH, such as pyenv's, lacks it).
SCRAPE_PYTHON = "/usr/bin/python3"
METRICS_AT = ("10.3.0.2", "9100")


def scrape(run, what, at=METRICS_AT):
    """One scrape of the lab's /metrics at AT (address, port) from the
    management host, parsed by prometheus_client (scrape.py get);
    {name: [(labels, value)]} or None."""
    status, out = run.lab.run(run.lab.mgmt, [SCRAPE_PYTHON, SCRAPE, "get", *at], timeout=30, merge=False)
    try:
        result = json.loads(out)
    except ValueError:
        result = {"status": f"exit {status}: {out.strip()[:200]}"}
    ok = status == 0 and result.get("status") == "200"
    run.check(ok, f"metrics: {what}: 200, {result.get('bytes', 0)} bytes that prometheus_client parses "
                  f"({result.get('status')}, {result.get('error', 'no parse error')})")
    if not ok:
        return None
    samples = collections.defaultdict(list)
    for name, labels, value in result["samples"]:
        samples[name].append((labels, value))
    run.check(result.get("content_type", "").startswith("text/plain; version=0.0.4"),
              f"metrics: {what}: Content-Type {result.get('content_type')!r}")
    return samples


def value(samples, name, **labels):
    """The value of sample NAME with LABELS (a subset), or None."""
    for got, number in samples.get(name, ()):
        if all(got.get(key) == want for key, want in labels.items()):
            return number
    return None


def metrics(run):
    """GET /metrics (tests/lab/metrics.rules) scraped from the management
    namespace while TCP flows through the firewall, parsed with
    prometheus_client; the numbers agree with the traffic; only rules that
    matched are listed. Then hostile clients (oversized, slow, malformed
    and binary requests, a connection flood, a tiny receive window, a source
    outside the allowed list) get an error or a closed connection while
    forwarding goes on, and the server still answers afterwards."""
    print("lab: the metrics endpoint (tests/lab/metrics.rules), Prometheus text, hostile clients")
    run.image(METRICS_RULES)
    run.boot("metrics", "microvm", "tcg", nics=3)
    run.lab.attach_mgmt(60)
    mgmt, sender = run.lab.mgmt, run.lab.sender
    run.expect_ping(mgmt, METRICS_AT[0], "metrics: the management host pings eth2")
    run.expect_console(r"eth2: GET /metrics on port 9100 for 10\.3\.0\.1/32", "metrics: the console says what is served")
    identity = re.search(r"identity ([0-9a-f]{16})", run.console_text())
    expect_ping_through(run, sender, RECEIVER_HOST, "metrics: traffic passes")
    server = run.lab.start(["timeout", "60", "iperf3", "-s", "-1"], ns=run.lab.receiver)
    time.sleep(0.5)
    stream = run.lab.start(["timeout", "60", "iperf3", "-c", RECEIVER_HOST, "-t", "6"], ns=sender)
    time.sleep(2)
    during = scrape(run, "during a TCP stream")
    run.lab.stop([stream, server])
    after = scrape(run, "after the stream")
    if during and after:
        if identity:
            run.check(value(during, "unifw_ruleset_info", identity=identity.group(1)) == 1,
                      f"metrics: unifw_ruleset_info carries the identity {identity.group(1)} of the console")
        run.check(value(during, "unifw_rules", chain="forward") == 4 and value(during, "unifw_rules", chain="input") == 3,
                  "metrics: 3 input and 4 forward rules")
        run.check((value(during, "unifw_conntrack_entries") or 0) >= 1, "metrics: the stream is a tracked connection")
        run.check(value(during, "unifw_conntrack_limit") == 65536, "metrics: the connection table's limit")
        received = value(after, "unifw_interface_received_bytes_total", interface="eth0") or 0
        run.check(received > 1_000_000, f"metrics: eth0 received {received:.0f} bytes (the stream)")
        grew = all((value(after, name, interface="eth0") or 0) >= (value(during, name, interface="eth0") or 0)
                   for name in ("unifw_interface_received_packets_total", "unifw_interface_sent_packets_total"))
        run.check(grew, "metrics: counters only grow from scrape to scrape")
        hits = {labels.get("line"): number for labels, number in after.get("unifw_rule_hits_total", ())}
        # Lines 16-18 are input rules (ping, replies, the scrape), 20-22
        # forward rules; nothing matched line 23's (UDP port 7).
        run.check(hits.get("21", 0) >= 1 and hits.get("20", 0) >= 1 and "23" not in hits,
                  f"metrics: per-rule hits for the rules that matched, none for the idle one ({hits})")
        run.check(value(after, "unifw_uptime_seconds") is not None and
                  value(after, "unifw_uptime_seconds") >= value(during, "unifw_uptime_seconds"),
                  "metrics: uptime")

    # Hostile clients, while the sender keeps pinging through.
    log = run.log_dir / "metrics-hostile.log"
    attack = run.lab.start([SCRAPE_PYTHON, SCRAPE, "hostile", *METRICS_AT], ns=mgmt, out=log)
    pinger = run.lab.start(["ping", "-c", "100", "-i", "0.3", "-W", "1", RECEIVER_HOST], ns=sender,
                           out=run.log_dir / "metrics-ping.log")
    try:
        attack.wait(timeout=150)
    except subprocess.TimeoutExpired:
        run.fail("metrics: the hostile clients did not finish within 150 s")
    pinger.wait(timeout=60)
    results = {line.split()[0]: line.split()[1:] for line in log.read_text().splitlines() if line.strip()}
    want = {"oversized": "431", "slow": "408", "method": "405", "path": "404", "version": "505", "garbage": "400",
            "no-request": "408"}
    for case, code in want.items():
        got = results.get(case, ["missing"])
        run.check(got[0] == code, f"metrics: hostile {case}: {code} ({' '.join(got)})")
    flood = dict(item.split("=") for item in results.get("flood", [])[:3] if "=" in item)
    run.check(int(flood.get("connected", 99)) <= 2 + 1 and int(flood.get("refused", 0)) >= 40
              and flood.get("ended") == flood.get("connected"),
              f"metrics: a flood of 50 connections: at most the server's sockets held, the rest refused, "
              f"the held ones ended ({' '.join(results.get('flood', ['missing']))})")
    small = results.get("small-window", ["missing", "0"])
    run.check(small[0] == "200" and int(small[1]) > 1000, f"metrics: a tiny receive window gets the whole "
                                                         f"response ({' '.join(small)})")
    lost = re.search(r"(\d+)% packet loss", (run.log_dir / "metrics-ping.log").read_text())
    run.check(lost is not None and int(lost.group(1)) <= 2,
              f"metrics: forwarding goes on meanwhile (ping through: {lost.group(0) if lost else 'no result'})")
    run.lab.ip("-n", mgmt, "addr", "add", "10.3.0.3/24", "dev", run.lab.taps[2])
    _, out = run.lab.run(mgmt, [SCRAPE_PYTHON, SCRAPE, "from", "10.3.0.3", *METRICS_AT], timeout=30)
    run.check(out.strip() in ("reset", "refused"), f"metrics: a source outside the list is reset ({out.strip()})")
    final = scrape(run, "after the attacks")
    if final:
        for code in ("404", "405", "408", "431", "505", "400"):
            run.check((value(final, "unifw_metrics_responses_total", code=code) or 0) >= 1,
                      f"metrics: responses with code {code} are counted")
        run.check((value(final, "unifw_metrics_connections_refused_total") or 0) >= 1,
                  "metrics: the refused source is counted")
    run.expect_no_console("PANIC|ERROR", "metrics: no errors on the console")


def garbage_frames(run):
    """Malformed frames from the sender (random bytes, truncated and
    corrupted IPv4, ARP, bad lengths, odd EtherTypes): the kernel keeps
    answering and forwarding, and nothing panics. The host fuzz targets
    cover the packet path; this covers the kernel around it (driver,
    buffers, smoltcp)."""
    print("lab: 20,000 malformed frames from the sender")
    run.image(DEFAULT_RULES)
    run.boot("garbage", "microvm", "tcg", "unifw.stats=1")
    sender = run.lab.sender
    run.expect_ping(sender, SENDER_FW, "garbage: firewall up")
    _, out = run.lab.run(sender, ["timeout", "120", "python3", GARBAGE, run.lab.taps[0], lab.mac(0), "20000"],
                         merge=False)
    sent = int(out.strip()) if out.strip().isdigit() else 0
    run.check(sent > 10000, f"garbage: {sent} frames sent" if sent > 10000 else f"garbage: only {sent} frames sent")
    run.expect_ping(sender, SENDER_FW, "garbage: the firewall still answers")
    run.expect_ping(sender, RECEIVER_HOST, "garbage: and still forwards")
    run.expect_console(r"eth0: dropped [0-9]+ ", "garbage: the drops are counted by reason")
    run.expect_no_console("PANIC", "garbage: no panic")


# --- Forwarding with iptables-save rulesets (tests/lab/*.ipt) -------------------------

def fw_boot(run, name, rules):
    """Builds RULES into the image, boots it and waits until the firewall
    answers on both sides; False (and a failed check) if it does not."""
    run.image(rules)
    run.boot(name, "microvm", lab.choose_accel())
    if run.lab.ping(run.lab.sender, SENDER_FW, run.boot_deadline) and run.lab.ping(run.lab.receiver,
                                                                                   RECEIVER_FW, 10):
        return True
    run.fail(f"{name}: firewall did not answer")
    return False


def wait_for_line(path, word, timeout=10):
    """True once file PATH has a line starting with WORD (a helper's
    "serving" or "sniffing")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(line.startswith(word) for line in Path(path).read_text().splitlines()):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return False


def fw_serve(run):
    """Echo servers on FW_PORTS in both namespaces; False if they do not
    start."""
    logs = [run.log_dir / f"serve-{side}.log" for side in ("sender", "receiver")]
    for ns, log in zip((run.lab.sender, run.lab.receiver), logs):
        run.lab.start(["python3", PROBE, "serve", *FW_PORTS], ns=ns, out=log)
    if all(wait_for_line(log, "serving") for log in logs):
        return True
    run.fail("echo servers did not start")
    return False


def expect_flow(run, ns, kind, dst, port, want, what):
    """One request/response (probe.py tcp|udp) from NS gives WANT: ok,
    refused or timeout."""
    timeout = os.environ.get("FW_TIMEOUT", "2")
    _, out = run.lab.run(ns, ["python3", PROBE, kind, dst, str(port), "-t", timeout])
    got = (out.strip().splitlines() or [""])[-1]
    run.check(got == want, f"{what} ({got})" if got == want else f"{what}: expected {want}, got {got}")


def expect_ping_through(run, ns, dst, what):
    """Three echoes through the firewall are answered."""
    run.check(run.lab.run(ns, ["ping", "-c3", "-i0.2", "-W2", "-q", dst])[0] == 0, what)


def expect_ttl_exceeded(run, ns, dst, firewall, what):
    """A TTL=1 echo gets "Time to live exceeded" from FIREWALL."""
    _, out = run.lab.run(ns, ["ping", "-c1", "-t1", "-W2", dst])
    if re.search(f"From {re.escape(firewall)} .*Time to live exceeded", out):
        run.ok(what)
    else:
        run.fail(f"{what}: {' '.join(out.splitlines())}")


def fw_basic(run):
    """tests/lab/fw-basic.ipt: allowed flows pass both ways, denied ones
    time out, reject gives RST or ICMP port-unreachable, TTL=1 gets
    time-exceeded, ping passes."""
    print("lab: forwarding with tests/lab/fw-basic.ipt (iptables-save)")
    if not (fw_boot(run, "fw-basic", "tests/lab/fw-basic.ipt") and fw_serve(run)):
        return
    s, r = run.lab.sender, run.lab.receiver
    for k in ("tcp", "udp"):
        expect_flow(run, s, k, RECEIVER_HOST, 5001, "ok", f"fw-basic: {k} 5001 sender->receiver accepted")
        expect_flow(run, r, k, SENDER_HOST, 5001, "ok", f"fw-basic: {k} 5001 receiver->sender accepted")
        expect_flow(run, s, k, RECEIVER_HOST, 5002, "ok", f"fw-basic: {k} 5002 sender->receiver accepted")
        expect_flow(run, r, k, SENDER_HOST, 5002, "timeout",
                    f"fw-basic: {k} 5002 receiver->sender dropped by the policy")
        expect_flow(run, s, k, RECEIVER_HOST, 5004, "timeout", f"fw-basic: {k} 5004 sender->receiver dropped by a rule")
        expect_flow(run, r, k, SENDER_HOST, 5005, "timeout",
                    f"fw-basic: {k} 5005 receiver->sender dropped by the policy")
    expect_flow(run, s, "tcp", RECEIVER_HOST, 5003, "refused",
                "fw-basic: tcp 5003 rejected with tcp-reset (ECONNREFUSED)")
    expect_flow(run, r, "tcp", SENDER_HOST, 5003, "refused", "fw-basic: tcp 5003 rejected with tcp-reset the other way")
    expect_flow(run, s, "udp", RECEIVER_HOST, 5003, "refused",
                "fw-basic: udp 5003 rejected with icmp-port-unreachable (ECONNREFUSED)")
    expect_reject_packets(run)
    expect_ping_through(run, s, RECEIVER_HOST, "fw-basic: sender pings the receiver through the firewall")
    expect_ping_through(run, r, SENDER_HOST, "fw-basic: receiver pings the sender through the firewall")
    expect_ttl_exceeded(run, s, RECEIVER_HOST, SENDER_FW,
                        "fw-basic: TTL=1 from the sender: time-exceeded from 10.1.0.1")
    expect_ttl_exceeded(run, r, SENDER_HOST, RECEIVER_FW,
                        "fw-basic: TTL=1 from the receiver: time-exceeded from 10.2.0.1")
    run.expect_no_console("PANIC|ERROR", "fw-basic: no errors on the console")


def bounce_profile(run):
    """`unifw.path=bounce` lets through what fw-basic.ipt drops (the
    platform's limit is measured with it, never a firewall), with a
    warning; `unifw.profile=on` logs where the frames' time went."""
    print("lab: unifw.path=bounce and unifw.profile=on (tests/lab/fw-basic.ipt)")
    run.image("tests/lab/fw-basic.ipt")
    run.boot("bounce-profile", "microvm", lab.choose_accel(), "unifw.path=bounce unifw.profile=on unifw.stats=1")
    s = run.lab.sender
    if not (run.lab.ping(s, SENDER_FW, run.boot_deadline) and fw_serve(run)):
        run.fail("bounce: firewall did not answer")
        return
    run.expect_console(r"unifw\.path=bounce: .*UNFILTERED", "bounce: the console warns it is no firewall")
    # The first ping teaches the bounce path both peers' MACs.
    expect_ping_through(run, s, RECEIVER_HOST, "bounce: sender pings the receiver")
    expect_flow(run, s, "udp", RECEIVER_HOST, 5004, "ok", "bounce: udp 5004, dropped by fw-basic's rule, crosses")
    # Enough frames that some of them fall in the passes the profile times.
    run.lab.run(s, ["ping", "-c", "300", "-i", "0.002", "-q", RECEIVER_HOST])
    run.expect_console(r"profile: \d+ frames timed, ns per frame: receive \d+ .* total \d+ ns",
                       "profile: a line of ns per frame per step")
    run.expect_no_console("PANIC|ERROR", "bounce: no errors on the console")


def expect_reject_packets(run):
    """What the rejections look like on the wire (sniffed at the sender):
    the RST comes from the receiver's address and port, the ICMP error
    quotes the datagram."""
    log = run.log_dir / "fw-basic-sniff.log"
    sniffer = run.lab.start(["python3", PROBE, "sniff"], ns=run.lab.sender, out=log)
    wait_for_line(log, "sniffing", 5)
    for kind in ("tcp", "udp"):
        run.lab.run(run.lab.sender, ["python3", PROBE, kind, RECEIVER_HOST, "5003", "-t", "2"])
    time.sleep(0.3)
    run.lab.stop([sniffer])
    seen = log.read_text()
    # RST+ACK (flags 20) from 10.2.0.2:5003; ICMP 3/3 from 10.1.0.1 quoting udp to 10.2.0.2:5003.
    if re.search(r"^tcp 10\.2\.0\.2 5003 10\.1\.0\.2 [0-9]+ (4|20)$", seen, re.MULTILINE):
        run.ok("fw-basic: the RST comes from 10.2.0.2:5003")
    else:
        run.fail(f"fw-basic: no RST from 10.2.0.2:5003 at the sender ({seen.replace(chr(10), ';')})")
    if re.search(r"^icmperr 10\.1\.0\.1 3 3 udp 10\.1\.0\.2 [0-9]+ 10\.2\.0\.2 5003$", seen, re.MULTILINE):
        run.ok("fw-basic: ICMP port-unreachable from 10.1.0.1 quotes the datagram")
    else:
        run.fail(f"fw-basic: no ICMP 3/3 from 10.1.0.1 at the sender ({seen.replace(chr(10), ';')})")


def fw_stateful(run):
    """tests/lab/fw-stateful.ipt: default drop, replies through
    ESTABLISHED,RELATED, new connections only from the sender's side."""
    print("lab: stateful forwarding with tests/lab/fw-stateful.ipt")
    if not (fw_boot(run, "fw-stateful", "tests/lab/fw-stateful.ipt") and fw_serve(run)):
        return
    s, r = run.lab.sender, run.lab.receiver
    for k in ("tcp", "udp"):
        expect_flow(run, s, k, RECEIVER_HOST, 5001, "ok", f"fw-stateful: {k} sender->receiver, the reply comes back")
        expect_flow(run, r, k, SENDER_HOST, 5001, "timeout", f"fw-stateful: {k} receiver->sender (unsolicited) dropped")
    expect_ping_through(run, s, RECEIVER_HOST, "fw-stateful: sender pings the receiver, replies come back")
    run.expect_no_ping(r, SENDER_HOST, "fw-stateful: the receiver cannot ping the sender")
    run.expect_no_console("PANIC|ERROR", "fw-stateful: no errors on the console")


def probe_run(run, plan, out, introduce=False):
    """Sends PLAN's probes from both sides (each side sends those whose
    source is one of its addresses: hosts .2-.9) while both sides sniff;
    writes "ID VERDICT" lines to OUT. INTRODUCE: each host first makes
    itself known to the firewall by an ARP request (its neighbour entry
    flushed, one datagram to the firewall's discard port), so that the
    firewall can answer probes addressed to it at once (unifw's local
    stack drops an answer to a neighbour it has not resolved yet, where
    Linux queues it)."""
    the_lab, tag = run.lab, out.stem
    for host in range(3, 10):
        the_lab.ip("-n", the_lab.sender, "addr", "add", f"10.1.0.{host}/24", "dev", the_lab.taps[0])
        the_lab.ip("-n", the_lab.receiver, "addr", "add", f"10.2.0.{host}/24", "dev", the_lab.taps[1])
    for side, ns in enumerate((the_lab.sender, the_lab.receiver) if introduce else (), start=1):
        for host in range(3, 10):
            the_lab.ip("-n", ns, "neigh", "flush", "dev", the_lab.taps[side - 1])
            hello = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                     f"s.bind(('10.{side}.0.{host}', 9)); s.sendto(b'hello', ('10.{side}.0.1', 9))")
            the_lab.run(ns, ["python3", "-c", hello])
            time.sleep(0.1)
    sniffs = [run.log_dir / f"{tag}-sniff-{side}.log" for side in "sr"]
    sniffers = [the_lab.start(["python3", PROBE, "sniff"], ns=ns, out=log)
                for ns, log in zip((the_lab.sender, the_lab.receiver), sniffs)]
    for log in sniffs:
        wait_for_line(log, "sniffing", 5)
    # The addresses answer ARP at once; give the sniffers a moment more.
    time.sleep(0.5)
    senders = [the_lab.start(["python3", PROBE, "send", str(plan), "--rate", rate], ns=ns,
                             out=run.log_dir / f"{tag}-send-{side}.log")
               for ns, rate, side in ((the_lab.sender, "150", "s"), (the_lab.receiver, "60", "r"))]
    for process in senders:
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            run.fail(f"{tag}: probe.py send did not finish in 120 s")
    the_lab.stop(senders + sniffers)
    _, verdicts = lab.output_of(["python3", PROBE, "judge", str(plan), *map(str, sniffs)], merge=False)
    out.write_text(verdicts)


def fw_differential(run):
    """The same iptables-save file (tests/lab/fw-diff.ipt) in unifw and in
    a Linux namespace firewall; a few hundred probe flows (new TCP
    connections, UDP datagrams, ICMP echoes, both ways, hosts .2-.9 on each
    side) must get the same verdict from both: pass, drop, rst, or the same
    ICMP error type/code."""
    rules, count = "tests/lab/fw-diff.ipt", os.environ.get("FW_DIFF_PROBES", "300")
    plan = run.log_dir / "diff.plan"
    ours, linux = run.log_dir / "diff-unifw.verdicts", run.log_dir / "diff-linux.verdicts"
    print(f"lab: differential test, {rules} in unifw and in Linux iptables, {count} probes")
    _, text = lab.output_of(["python3", PROBE, "plan", count, "--seed", os.environ.get("FW_DIFF_SEED", "4")],
                            merge=False)
    plan.write_text(text)
    if not fw_boot(run, "fw-diff", rules):
        return
    probe_run(run, plan, ours)
    run.expect_no_console("PANIC|ERROR", "fw-diff: no errors on the unifw console")
    if through_linux(run, "fw-diff", rules, lambda: probe_run(run, plan, linux) or True):
        fw_compare(run, plan, ours, linux)


def through_linux(run, test, rules, measure):
    """The Linux half of a differential test, after unifw's: stops the
    lab, brings up the Linux namespace firewall with RULES (a path under
    the repository) and returns MEASURE(), or None (a failure of TEST) when
    the firewall does not come up; the lab is down afterwards."""
    run.lab.down()
    run.console = None
    try:
        run.lab.linuxfw_up(lab.ROOT / rules)
        return measure()
    except lab.LabError as exc:
        run.fail(f"{test}: Linux namespace firewall did not come up ({exc})")
        return None
    finally:
        run.lab.down()


def fw_compare(run, plan, ours, linux, test="fw-diff"):
    """Counts identical verdicts (ours vs Linux) and lists the others, as
    checks of TEST."""
    probes = [line.split() for line in plan.read_text().splitlines()]
    a = [line.split() for line in ours.read_text().splitlines()]
    b = [line.split() for line in linux.read_text().splitlines()]
    total = len(probes)
    same = sum(1 for x, y in zip(a, b) if x == y)
    counts = collections.Counter(v[1] for v in b if len(v) == 2)
    summary = ", ".join(f"{verdict} {counts[verdict]}" for verdict in sorted(counts))
    print(f"  differential: {same} of {total} probes got the same verdict (Linux: {summary})")
    if len(a) == total and same == total:
        run.ok(f"{test}: unifw and Linux iptables agree on all {total} probes")
        return
    run.fail(f"{test}: {total - same} of {total} verdicts differ")
    shown = 0
    for probe, x, y in zip(probes, a, b):
        if x != y and shown < 30:
            pid, proto, src, sport, dst, dport = probe
            print(f"    {pid} {proto} {src}:{sport} -> {dst}:{dport} unifw {x[-1]} linux {y[-1]}")
            shown += 1


@dataclass(frozen=True)
class Test:
    """A lab test: what it checks (for --help) and the function running it."""
    summary: str
    run: object


# Lab tests in their own modules (they import from this one, so here).
import lab_bench  # noqa: E402
import lab_connlimit  # noqa: E402
import lab_flood  # noqa: E402
import lab_fragments  # noqa: E402
import lab_hostile  # noqa: E402
import lab_linuxvm  # noqa: E402
import lab_mtu  # noqa: E402
import lab_nat  # noqa: E402
import lab_pool  # noqa: E402
import lab_random  # noqa: E402

# The lab tests by name, in the order `scripts/test --lab` runs them.
TESTS = {
    "boot-microvm": Test("microvm, TCG: boot, ping eth0 and eth1", functools.partial(boot_ping, machine="microvm",
                                                                                    accel="tcg")),
    "boot-q35": Test("q35 + qboot, TCG: boot, ping", functools.partial(boot_ping, machine="q35", accel="tcg")),
    "boot-pc-legacy": Test("pc + qboot, legacy virtio-pci, TCG: boot, ping",
                           functools.partial(boot_ping, machine="pc-legacy", accel="tcg")),
    "cmdline": Test("kernel command line overrides and bad values", cmdline),
    "multiboot2": Test("GRUB ISO, Multiboot2 entry, command line from GRUB", multiboot2),
    **{f"disk-{kind}": Test(f"build-images disk: {m}, {fw}, {'root ports' if ports else 'bus 0'}, {suffix}, "
                            "cloud MACs, traffic",
                            functools.partial(disk_boot, kind=kind))
       for kind, (m, fw, ports, suffix) in DISK_BOOTS.items()},
    "fw-basic": Test("tests/lab/fw-basic.ipt: accept, drop, reject, TTL", fw_basic),
    "fw-stateful": Test("tests/lab/fw-stateful.ipt: ESTABLISHED,RELATED replies", fw_stateful),
    "bounce-profile": Test("unifw.path=bounce crosses what the rules drop; unifw.profile=on logs ns per step",
                           bounce_profile),
    "fw-diff": Test("tests/lab/fw-diff.ipt: 300 probes, unifw vs Linux iptables", fw_differential),
    "fw-random": Test("random iptables-save rulesets (ruleset_gen.py): probes, unifw vs Linux iptables",
                      lab_random.fw_random),
    "stream": Test("TCP streams past 65,536 frames, offloads off: event index; flags and 1,024-entry rings",
                   sustained_stream),
    "vcpus": Test("2 vCPUs on 2 queue pairs (microvm, q35, pc-legacy): numbered flows whole and in order, both vCPUs work",
                  vcpus),
    "multiqueue": Test("NICs offering 4 queue pairs (microvm, pc-legacy, q35): 1 kept with one vCPU, traffic passes",
                       multiqueue),
    "panic-vcpu": Test("unifw.crashtest=1: a panic on vCPU 1 stops vCPU 0 too; the firewall answers nothing",
                       panic_vcpu),
    "first-packets": Test("first UDP and TCP packets to an unresolved host arrive at once; same in Linux",
                          lab_flood.first_packets),
    "dhcp": Test("eth2 by DHCP from dnsmasq: router option, renewal, forwarding waits for it", dhcp),
    "cloud": Test("tests/lab/cloud.rules: NICs by MAC, DHCP fallback, option 121 routes", cloud),
    "metrics": Test("tests/lab/metrics.rules: GET /metrics parsed by prometheus_client, hostile clients", metrics),
    "garbage": Test("20,000 malformed frames, then still answers and forwards", garbage_frames),
    "hostile": Test("tests/lab/hostile.ipt: spoofed sources, IP options, broadcast ICMP; unifw vs Linux",
                    lab_hostile.hostile),
    "mtu": Test("tests/lab/mtu.rules: eth1 MTU 1400: fragments, frag needed, TCP PMTU discovery; same in Linux",
                lab_mtu.mtu),
    "fragments": Test("fragment trains (order, duplicates, overlaps, 200 others' first fragments): unifw vs Linux",
                      lab_fragments.fragments),
    "flood-neighbours": Test("SYN flood: 8 new neighbours reachable; ARP flood: busy one kept; unifw vs Linux",
                             lab_flood.flood_neighbours),
    "conntrack-boot": Test("tests/lab/conntrack.rules: 1,048,576 flows in 64 MiB (shrunk) and 512 MiB",
                           lab_flood.conntrack_boot),
    "nat": Test("tests/lab/nat.ipt: masquerade, port forward, ICMP errors, fragments; unifw vs Linux", lab_nat.nat),
    "connlimit": Test("tests/lab/connlimit.ipt: 2 connections per source, the 3rd reset; unifw vs Linux",
                      lab_connlimit.connlimit),
    "pool": Test("tests/lab/pool.rules: 3 wire-mode members behind Open vSwitch, symmetric hash, failover",
                 lab_pool.pool),
    "linux-vm": Test("the Linux VM baseline (tests/lab/linux-vm.ipt): Debian kernel, iptables-legacy, traffic",
                     lab_linuxvm.linux_vm_test),
    "bench-quick": Test("scripts/bench --quick: every metric of unifw, container, nftables and vm at N = 1, 1000",
                        lab_bench.bench_quick),
    "boot-kvm": Test("microvm under KVM (only with a usable /dev/kvm)", boot_kvm),
}


def run_tests(names=None):
    """Runs the lab tests NAMES (default all, in `TESTS` order); returns
    (failed checks, log directory). Unknown names raise LabError."""
    names = list(names or TESTS)
    unknown = [name for name in names if name not in TESTS]
    if unknown:
        raise lab.LabError(f"unknown lab test {unknown[0]} (valid: {', '.join(TESTS)})")
    lab.install_deps(("test",))
    log_dir = os.environ.get("LABTEST_LOG_DIR") or tempfile.mkdtemp(prefix="unifw-labtest.")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    with lab.Lab() as the_lab:
        run = LabRun(the_lab, log_dir)
        for name in dict.fromkeys(names):
            try:
                TESTS[name].run(run)
            except lab.BuildError:
                raise
            except lab.LabError as exc:
                run.fail(f"{name}: {exc}")
            finally:
                the_lab.down()
                run.console = None
    return run.failures, log_dir
