#!/usr/bin/env python3
"""The lab of ../shared/CONVENTIONS.md, and the one place that boots unifw in it.

    sender ns               QEMU guest: unifw                 receiver ns
    10.1.0.2/24 ==t0== eth0 10.1.0.1    eth1 10.2.0.1 ==t1== 10.2.0.2/24
    via 10.1.0.1                 eth2 (optional)             via 10.2.0.1
                                    ==t2== mgmt ns 10.3.0.1/24 (DHCP server)

Each guest NIC is a virtio-net device on a tap. A tap is created and set up
in the root namespace, QEMU opens it, and once QEMU holds it (its carrier
comes up) it moves into the sender's or receiver's namespace, where it keeps
working. `Lab.up_inside_sender` is the other way, for launch time: the tap
is made inside the sender's namespace, already addressed, and QEMU runs in
that namespace, so nothing waits on moving a tap.

Names come from UNIFW_LAB (default "unifw"): namespaces $UNIFW_LAB-sender,
-receiver, -mgmt and -linuxfw (the Linux baseline: a namespace routing
between two veth pairs in QEMU's place, `Lab.linuxfw_up`), taps
$UNIFW_LAB-t0, -t1, -t2.

Cleanup: every process the lab starts (QEMU, iperf3, dnsmasq, probe
servers) is killed when the `Lab` context ends, whether normally, by an
exception, SIGINT or SIGTERM (turned into SystemExit), and the namespaces
and taps are removed. Each child also gets PR_SET_PDEATHSIG, so the kernel
kills it if this process dies without cleaning up (SIGKILL).

Also here, once each: the Debian packages the lab needs (`PACKAGES`,
`install_deps`), the kernel build (`build_kernel`), the accelerator choice
(`choose_accel`) and the QEMU command line (`qemu_command`). Used by
scripts/run, scripts/test (lab_tests.py), scripts/launch-time and
scripts/bench-forward. As a command, for .ci/run:

    lab.py install-deps [--update] [GROUP...]   GROUP: run, test, bench, perf, images, deploy,
                                                linux-vm, bench-all (default all but perf)
"""

import argparse
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# Our output and our children's interleave on one terminal or log: print
# each line when it is written, not when a buffer fills.
sys.stdout.reconfigure(line_buffering=True)

ROOT = Path(__file__).resolve().parents[2]
LAB = os.environ.get("UNIFW_LAB", "unifw")
QBOOT = "/usr/share/qemu/qboot.rom"
# UEFI firmware (Debian's ovmf): code, and the variable store each VM copies.
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
MACHINES = ("microvm", "q35", "pc", "pc-legacy")
# The lab's addresses (CONVENTIONS.md): the firewall's, and the hosts' on
# each side, eth0 side first.
FIREWALL = ("10.1.0.1", "10.2.0.1")
HOSTS = ("10.1.0.2", "10.2.0.2")
MGMT_HOST = "10.3.0.1"
MAX_NICS = 3

# What provides each command (or file) the lab uses: the one list of Debian
# packages. GROUPS says which commands each script needs.
PACKAGES = {
    "qemu-system-x86_64": ("qemu-system-x86",),
    QBOOT: ("qemu-system-data",),
    "ip": ("iproute2",),
    "ping": ("iputils-ping",),
    "python3": ("python3",),
    "grub-mkrescue": ("grub-common", "grub-pc-bin"),
    "/usr/lib/grub/i386-pc": ("grub-pc-bin",),
    "xorriso": ("xorriso",),
    "mformat": ("mtools",),
    "iperf3": ("iperf3",),
    "dnsmasq": ("dnsmasq-base",),
    "iptables-restore": ("iptables",),
    "ovs-vswitchd": ("openvswitch-switch",),
    "ethtool": ("ethtool",),
    "/usr/lib/grub/x86_64-efi": ("grub-efi-amd64-bin",),
    "qemu-img": ("qemu-utils",),
    OVMF_CODE: ("ovmf",),
    "/usr/lib/python3/dist-packages/prometheus_client": ("python3-prometheus-client",),
    # deploy/validate: yanglint for the SOL006 descriptor, and the venv
    # module of Debian 12's python3 for the venv that holds OpenStack Heat.
    "yanglint": ("libyang2-tools",),
    "/usr/lib/python3.11/ensurepip": ("python3-venv",),
    # The Linux VM baseline (linux_vm.py) and scripts/bench's tools.
    "/usr/bin/busybox": ("busybox-static",),
    "sockperf": ("sockperf",),
    "hping3": ("hping3",),
    "/usr/lib/python3/dist-packages/matplotlib": ("python3-matplotlib",),
    # scripts/bench-forward --breakdown samples QEMU.
    "perf": ("linux-perf",),
}
_RUN = ("qemu-system-x86_64", QBOOT, "ip", "ping", "python3")
# scripts/build-images: GRUB for BIOS and UEFI, its image tools, qemu-img.
_IMAGES = ("grub-mkrescue", "/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi", "xorriso", "mformat", "qemu-img")
GROUPS = {
    "run": _RUN,
    "test": _RUN + _IMAGES + (OVMF_CODE, "iperf3", "dnsmasq", "iptables-restore", "ovs-vswitchd", "ethtool",
                              "/usr/bin/busybox",
                              "/usr/lib/python3/dist-packages/prometheus_client"),
    "bench": _RUN + ("iperf3", "iptables-restore", "ovs-vswitchd", "ethtool"),
    "images": _IMAGES,
    "deploy": ("yanglint", "/usr/lib/python3.11/ensurepip"),
    "linux-vm": ("/usr/bin/busybox", "iptables-restore"),
    "perf": ("perf",),
    "bench-all": _RUN + ("iperf3", "iptables-restore", "/usr/bin/busybox", "sockperf", "hping3",
                         "/usr/lib/python3/dist-packages/matplotlib"),
}


class LabError(Exception):
    """Something in the lab did not come up (a tap, QEMU, a namespace)."""


class NotReady(LabError):
    """A firewall not ready within its time cap (scripts/bench records it
    as over the cap: loading a million rules is slow)."""


class BuildError(LabError):
    """The kernel image did not build: nothing can boot."""


def note(message):
    """Progress on stderr, as every script here prints it."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def as_root(command):
    """COMMAND, behind sudo unless this process is root."""
    return list(command) if os.geteuid() == 0 else ["sudo", *command]


def in_ns(ns, command):
    """COMMAND run inside network namespace NS (as root)."""
    return as_root(["ip", "netns", "exec", ns, *command])


def sh(command, check=True, stdin=subprocess.DEVNULL, timeout=None):
    """Runs COMMAND quietly as root; raises LabError if CHECK and it fails,
    NotReady if it runs past TIMEOUT seconds (then it is killed)."""
    try:
        result = subprocess.run(as_root(command), stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NotReady(f"{' '.join(command)}: still running after {timeout} s") from exc
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(command)}: {result.stderr.strip() or f'exit {result.returncode}'}")
    return result.returncode == 0


def output_of(command, timeout=None, merge=True):
    """(exit status, output) of COMMAND: stdout, with stderr too if MERGE;
    status 124 (as timeout(1)) if it ran longer than TIMEOUT seconds."""
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge else subprocess.DEVNULL, text=True,
                                timeout=timeout, preexec_fn=_die_with_parent(os.getpid()))
    except subprocess.TimeoutExpired as exc:
        partial = exc.output or ""
        return 124, partial.decode(errors="replace") if isinstance(partial, bytes) else partial
    return result.returncode, result.stdout


# --- Dependencies -----------------------------------------------------------

def _present(thing):
    """Whether a command (on PATH or in the sbin directories) or a path exists."""
    if thing.startswith("/"):
        return os.path.exists(thing)
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(thing, path=path) is not None


def install_deps(groups=("run",), update=False, strict=False):
    """Installs the Debian packages that GROUPS need and are missing, and the
    kernel's Rust target. UPDATE runs apt-get update even when nothing is
    missing; STRICT makes a failing `rustup target add` an error (CI)."""
    needs = {thing for group in groups for thing in GROUPS[group]}
    missing = sorted({pkg for thing in needs if not _present(thing) for pkg in PACKAGES[thing]})
    if update or missing:
        subprocess.run(as_root(["apt-get", "update", "-qq"]), check=True)
    if missing:
        note(f"installing {' '.join(missing)}")
        subprocess.run(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
                                *missing]), check=True, stdout=subprocess.DEVNULL)
    if shutil.which("rustup"):
        quiet = {} if strict else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["rustup", "target", "add", "x86_64-unknown-none"], cwd=ROOT, check=strict, **quiet)
    elif strict:
        raise LabError("rustup is missing")


# --- The kernel image, the accelerator, the QEMU command line ----------------

def kernel_image():
    """Where `cargo build --release` puts the kernel (CARGO_TARGET_DIR aware)."""
    target_dir = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
    return target_dir / "x86_64-unknown-none" / "release" / "unifw"


def build_kernel(rules=None):
    """Builds the kernel image with RULES compiled in (a path; None keeps
    UNIFW_RULES from the environment, else build.rs's rules/default.rules)
    and returns its path."""
    env = dict(os.environ)
    if rules is not None:
        env["UNIFW_RULES"] = str(rules)
    if subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, env=env).returncode != 0:
        raise BuildError(f"kernel build failed (rules: {env.get('UNIFW_RULES', 'rules/default.rules')})")
    return kernel_image()


def kvm_present():
    """Whether /dev/kvm can be opened at all (KVM may still be slow here)."""
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def choose_accel():
    """kvm when /dev/kvm works and runs guests natively, tcg otherwise;
    UNIFW_ACCEL=kvm|tcg overrides. Under kvm_pvm (KVM without hardware
    virtualisation, as on these machines) a guest that is not PVM-aware has
    every instruction emulated: measured here ~2000x slower than native and
    far slower than TCG, so it does not count as usable."""
    if os.environ.get("UNIFW_ACCEL"):
        return os.environ["UNIFW_ACCEL"]
    if kvm_present() and not os.path.isdir("/sys/module/kvm_pvm"):
        with open("/proc/cpuinfo") as cpuinfo:
            if re.search(r"\b(vmx|svm)\b", cpuinfo.read()):
                return "kvm"
    return "tcg"


def mac(index):
    """The MAC address of guest NIC INDEX (eth0 is 0)."""
    return f"52:54:00:00:01:0{index}"


def queue_count(queues=None):
    """QUEUES, else UNIFW_QUEUES, else 1: the queue pairs of each NIC (the
    netdev's tap queues and the device's `mq`). The lab's taps and QEMU's
    command line both ask here, so they agree: a tap made with
    `multi_queue` opens only with queues > 1, and one made without it
    only with 1."""
    value = queues or os.environ.get("UNIFW_QUEUES") or 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise LabError(f"queues={value}: a number of queue pairs from 1 to 64")
    return count


def nic_queue_counts(queues, nics):
    """The queue pairs of each of NICS NICs: QUEUES is one count for all
    (`queue_count`) or a list of counts, eth0's first (a lab whose NICs
    offer different numbers of pairs)."""
    if isinstance(queues, (list, tuple)):
        if len(queues) < nics:
            raise LabError(f"queues={list(queues)}: a count for each of {nics} NICs")
        return [queue_count(q) for q in queues[:nics]]
    return [queue_count(queues)] * nics


def tap_add(tap, queues=None):
    """`ip tuntap add` arguments for TAP, with `multi_queue` when the NICs
    have more than one queue pair (`queue_count`)."""
    return ["tuntap", "add", "dev", tap, "mode", "tap", *(["multi_queue"] if queue_count(queues) > 1 else [])]


def qemu_command(machine, accel, taps, kernel=None, iso=None, append="", serial="null", disk=None, firmware="bios",
                 macs=None, root_ports=False, vars_file=None, memory=None, rx_queue=None, queues=None, cpus=None,
                 nic_options=""):
    """The QEMU command line that boots unifw with one virtio-net NIC per tap
    in TAPS (eth0 first). MACHINE: microvm (virtio-mmio), q35 or pc
    (virtio-pci; the PVH entry through qboot), pc-legacy (pc with legacy-only
    virtio-pci). KERNEL defaults to `kernel_image()`; ISO boots a GRUB CD-ROM
    (Multiboot2) through SeaBIOS instead, and DISK a disk image from
    scripts/build-images (qcow2 or raw, by its suffix) on virtio-blk, as
    Nova boots an instance, through FIRMWARE: bios (SeaBIOS) or uefi (OVMF,
    with its variable store copied to VARS_FILE); with ISO or DISK the
    command line comes from GRUB's configuration. MACS (default `mac(i)`)
    gives each NIC's address. ROOT_PORTS (q35) puts the disk and every NIC
    behind its own PCI Express root port, as libvirt does. SERIAL is QEMU's
    chardev for the console ("file:PATH", "mon:stdio", "null"). MEMORY is
    QEMU's -m (default UNIFW_MEM, else 128M). RX_QUEUE (UNIFW_RX_QUEUE) is
    the receive queue size; QUEUES (UNIFW_QUEUES, `queue_count`) > 1 gives
    each NIC that many queue pairs (virtio-net `mq`; the taps must have
    been made by `tap_add` with the same count), or a list of counts
    gives each NIC its own (`nic_queue_counts`). NIC_OPTIONS are more
    properties of every NIC's device ("guest_tso4=off,guest_tso6=off":
    what the device offers)."""
    if machine not in MACHINES:
        raise LabError(f"unknown machine {machine} ({', '.join(MACHINES)})")
    if firmware not in ("bios", "uefi") or (firmware == "uefi" and (disk is None or vars_file is None)):
        raise LabError(f"firmware {firmware}: bios, or uefi with a disk and a variable store")
    # Named threads ("CPU 0/TCG", "IO ...") for perf and top.
    command = ["qemu-system-x86_64", "-name", "unifw,debug-threads=on", "-nodefaults", "-no-user-config",
               "-display", "none", "-no-reboot", "-m", memory or os.environ.get("UNIFW_MEM", "128M")]
    command += ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] if accel == "kvm" else ["-accel", "tcg"]
    # CPUS, or UNIFW_CPUS: vCPUs (QEMU's -smp; default 1). unifw serves
    # NICs with as many as the NICs have queue pairs (QUEUES).
    cpus = int(cpus or os.environ.get("UNIFW_CPUS") or 1)
    if cpus > 1:
        command += ["-smp", str(cpus)]
    firmware_boots = iso is not None or disk is not None
    if machine == "microvm":
        if firmware_boots:
            raise LabError("microvm has no firmware to boot an ISO or a disk")
        command += ["-M", "microvm"]
        device = "virtio-net-device"
    else:
        command += ["-M", "pc" if machine == "pc-legacy" else machine]
        if not firmware_boots:
            command += ["-bios", QBOOT]
        device = "virtio-net-pci,disable-modern=on" if machine == "pc-legacy" else "virtio-net-pci"
    if root_ports and machine != "q35":
        raise LabError("root ports are a q35 (PCI Express) topology")
    ports = iter(range(1, 32))

    def bus():
        """`,bus=pci.N` of the next root port (made here), or nothing."""
        if not root_ports:
            return ""
        n = next(ports)
        command.extend(["-device", f"pcie-root-port,port={0x10 + n - 1:#x},chassis={n},id=pci.{n},bus=pcie.0,"
                                   f"addr={0x2 + (n - 1) // 8:#x}.{(n - 1) % 8:#x}"
                                   + (",multifunction=on" if (n - 1) % 8 == 0 else "")])
        return f",bus=pci.{n},addr=0x0"
    if firmware == "uefi":
        shutil.copy(OVMF_VARS, vars_file)
        command += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]
    if iso is not None:
        command += ["-cdrom", str(iso), "-boot", "d"]
    elif disk is not None:
        kind = "qcow2" if str(disk).endswith(".qcow2") else "raw"
        command += ["-drive", f"file={disk},format={kind},if=none,id=disk0,snapshot=on",
                    "-device", f"virtio-blk-pci,drive=disk0,bootindex=1{bus()}"]
    else:
        command += ["-kernel", str(kernel or kernel_image())]
        if append:
            command += ["-append", append]
    # RX_QUEUE, or UNIFW_RX_QUEUE: the NICs' receive queue size (QEMU's
    # default 256, up to 1024 with a tap); unifw fills whatever ring it gets.
    rx_queue = rx_queue or os.environ.get("UNIFW_RX_QUEUE")
    if rx_queue:
        device += f",rx_queue_size={rx_queue}"
    if nic_options:
        device += "," + nic_options.strip(",")
    # Multiqueue: a tap queue per pair; virtio-net-pci needs an MSI-X
    # vector per queue, one for the control queue and one for
    # configuration changes (QEMU's default is 3).
    for index, (tap, count) in enumerate(zip(taps, nic_queue_counts(queues, len(taps)))):
        address = macs[index] if macs else mac(index)
        netdev_queues, mq = "", ""
        if count > 1:
            netdev_queues = f",queues={count}"
            mq = ",mq=on" + ("" if machine == "microvm" else f",vectors={2 * count + 2}")
        command += ["-netdev", f"tap,id=n{index},ifname={tap},script=no,downscript=no{netdev_queues}",
                    "-device", f"{device}{mq},netdev=n{index},mac={address}{bus()}"]
    return command + ["-serial", serial]


# --- Processes that die with us -----------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent):
    """A preexec_fn: the child gets SIGKILL when PARENT (this process) dies,
    and exits at once if PARENT is already gone (the race before prctl).
    `ip netns exec` and QEMU exec without forking, so this reaches them."""
    def set_death_signal():
        """Runs in the child between fork and exec."""
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return set_death_signal


def _exit_on_signal(signum, _frame):
    """SIGTERM and SIGHUP end the program like Ctrl-C does: cleanup runs."""
    raise SystemExit(128 + signum)


def handle_signals():
    """Makes SIGINT raise KeyboardInterrupt (even when our parent started us
    with SIGINT ignored, as a shell does for background jobs) and SIGTERM
    and SIGHUP raise SystemExit, so every `with Lab()` cleans up."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


@contextlib.contextmanager
def _signals_held():
    """Holds SIGINT and SIGTERM back while the lab is torn down, so a second
    Ctrl-C cannot leave half a lab; they arrive once it is done."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_process(process, grace=3.0):
    """SIGTERM, then SIGKILL after GRACE seconds; reaps it."""
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except ProcessLookupError:
            pass


# --- The lab -----------------------------------------------------------------

class Lab:
    """The lab's namespaces, taps and processes. Use it as a context
    manager: entering removes leftovers of an earlier run, leaving (for any
    reason) kills every process it started and removes the namespaces."""

    def __init__(self, name=None):
        """The lab named NAME (default UNIFW_LAB); nothing is created yet."""
        self.name = name or LAB
        self.sender, self.receiver, self.mgmt, self.linuxfw = (
            f"{self.name}-{role}" for role in ("sender", "receiver", "mgmt", "linuxfw"))
        self.taps = tuple(f"{self.name}-t{index}" for index in range(MAX_NICS))
        if len(self.taps[0]) > 15:
            raise LabError(f"UNIFW_LAB={self.name} is too long for interface names (15 characters)")
        # Namespace of each side (eth0's first) and its host address.
        self.sides = ((self.sender, HOSTS[0]), (self.receiver, HOSTS[1]))
        self.processes = []
        self.qemu = None

    def __enter__(self):
        """Signals unwind from here on; leftovers of an earlier run go."""
        handle_signals()
        self.down()
        return self

    def __exit__(self, *_exc):
        """Tears the lab down; exceptions propagate."""
        self.down()
        return False

    # Processes.

    def start(self, command, ns=None, out=None, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL):
        """Starts COMMAND (in namespace NS) in the background; stdout and
        stderr go to file OUT if given (never to our stdout by default: a
        pipe held open by a helper would hang callers). Stopped by `stop`
        and `down`; dies with this process."""
        command = in_ns(ns, command) if ns else as_root(command)
        log = open(out, "w") if out else None
        try:
            process = subprocess.Popen(command, stdin=stdin, stdout=log or stdout, stderr=log or stderr,
                                       preexec_fn=_die_with_parent(os.getpid()),
                                       text=stdout == subprocess.PIPE)
        finally:
            if log:
                log.close()
        self.processes.append(process)
        return process

    def stop(self, processes=None):
        """Stops PROCESSES (default: every helper and QEMU)."""
        for process in list(self.processes if processes is None else processes):
            stop_process(process)
            if process in self.processes:
                self.processes.remove(process)
        if self.qemu is not None and self.qemu.poll() is not None:
            self.qemu = None

    def boot(self, command, ns=None, console=None, interactive=False):
        """Starts QEMU with COMMAND (in namespace NS); its stderr goes to
        CONSOLE.stderr, or with INTERACTIVE it keeps our terminal."""
        if interactive:
            self.qemu = self.start(command, ns=ns, stdin=None, stdout=None, stderr=None)
        else:
            self.qemu = self.start(command, ns=ns, out=f"{console}.stderr" if console else None)
        return self.qemu

    # Namespaces and taps.

    def ip(self, *args, check=True):
        """Runs `ip ARGS` as root."""
        return sh(["ip", *args], check=check)

    def up(self, nics=2, queues=None):
        """A fresh lab: the sender's and receiver's namespaces and NICS taps,
        up in the root namespace, for QEMU to open (with QUEUES queues,
        one count for all or one per NIC: `nic_queue_counts`)."""
        self.down()
        for ns in (self.sender, self.receiver):
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        for tap, count in zip(self.taps[:nics], nic_queue_counts(queues, nics)):
            self.ip(*tap_add(tap, count))
            self.ip("link", "set", tap, "up")

    def wait_carrier(self, tap, timeout):
        """Waits until QEMU holds TAP (its carrier comes up)."""
        deadline = time.monotonic() + timeout
        carrier = Path("/sys/class/net") / tap / "carrier"
        while True:
            try:
                if carrier.read_text().strip() == "1":
                    return
            except OSError:
                raise LabError(f"{tap} vanished (did QEMU exit?)") from None
            if self.qemu is not None and self.qemu.poll() is not None:
                raise LabError(f"QEMU exited (status {self.qemu.returncode}) before opening {tap}")
            if time.monotonic() > deadline:
                raise LabError(f"QEMU did not open {tap} within {timeout}s")
            time.sleep(0.005)

    def attach(self, timeout=20):
        """Once QEMU holds the first two taps, moves them into the sender's
        and receiver's namespaces, addresses them and routes through the
        firewall."""
        for index, (ns, host) in enumerate(self.sides):
            tap = self.taps[index]
            self.wait_carrier(tap, timeout)
            self.ip("link", "set", tap, "netns", ns)
            self.ip("-n", ns, "addr", "add", f"{host}/24", "dev", tap)
            self.ip("-n", ns, "link", "set", tap, "up")
            self.ip("-n", ns, "route", "add", "default", "via", FIREWALL[index])

    def serve_dhcp(self, log_dir, lease="10m", options=()):
        """dnsmasq in the management namespace (after `attach_mgmt`),
        leasing 10.3.0.50-59 for LEASE on the third tap; OPTIONS are more
        `--dhcp-option` values (`3,10.3.0.1`, `121,10.9.0.0/24,10.3.0.254`).
        Its log (with every DHCP message) and leases go to LOG_DIR.
        Returns the process."""
        log_dir = Path(log_dir)
        return self.start(["dnsmasq", "--keep-in-foreground", "--port=0", "--bind-interfaces",
                           f"--interface={self.taps[2]}", f"--dhcp-range=10.3.0.50,10.3.0.59,255.255.255.0,{lease}",
                           f"--dhcp-leasefile={log_dir / 'dhcp.leases'}", f"--pid-file={log_dir / 'dnsmasq.pid'}",
                           f"--log-facility={log_dir / 'dnsmasq.log'}", "--log-dhcp",
                           *(f"--dhcp-option={option}" for option in options)], ns=self.mgmt)

    def attach_mgmt(self, timeout=60):
        """Moves the third tap (eth2) into the management namespace as
        10.3.0.1/24, once QEMU holds it."""
        self.ip("netns", "add", self.mgmt)
        self.ip("-n", self.mgmt, "link", "set", "lo", "up")
        tap = self.taps[2]
        self.wait_carrier(tap, timeout)
        self.ip("link", "set", tap, "netns", self.mgmt)
        self.ip("-n", self.mgmt, "addr", "add", f"{MGMT_HOST}/24", "dev", tap)
        self.ip("-n", self.mgmt, "link", "set", tap, "up")

    def up_inside_sender(self, queues=None):
        """Launch time's lab: only the sender's namespace, with the first tap
        made inside it, addressed and up before QEMU (run in that namespace)
        opens it, and a static neighbour entry for the firewall so Linux's
        ARP retry timer (1 s) stays out of the measurement."""
        self.down()
        ns, tap = self.sender, self.taps[0]
        self.ip("netns", "add", ns)
        self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("-n", ns, *tap_add(tap, queues))
        self.ip("-n", ns, "addr", "add", f"{HOSTS[0]}/24", "dev", tap)
        self.ip("-n", ns, "link", "set", tap, "up")
        self.ip("-n", ns, "neigh", "replace", FIREWALL[0], "lladdr", mac(0), "dev", tap, "nud", "permanent")

    def linuxfw_up(self, rules, restore=("iptables-restore",), timeout=None):
        """The "container" baseline of CONVENTIONS.md in QEMU's place: the
        sender's and receiver's namespaces as in the lab (same addresses,
        interfaces named like the taps), joined by veth pairs to the linuxfw
        namespace, whose ends are named eth0 and eth1 so the rules' -i/-o
        mean the same. RULES (iptables-save) is loaded with iptables-restore
        (or RESTORE, a command reading RULES on stdin: scripts/bench loads
        nftables with `nft -f -`) within TIMEOUT seconds (NotReady
        otherwise); returns the seconds that took."""
        self.down()
        for ns in (self.sender, self.receiver, self.linuxfw):
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        for index, (ns, host) in enumerate(self.sides):
            end = f"eth{index}"
            self.ip("link", "add", self.taps[index], "netns", ns, "type", "veth", "peer", "name", end,
                    "netns", self.linuxfw)
            self.ip("-n", self.linuxfw, "addr", "add", f"{FIREWALL[index]}/24", "dev", end)
            self.ip("-n", self.linuxfw, "link", "set", end, "up")
            self.ip("-n", ns, "addr", "add", f"{host}/24", "dev", self.taps[index])
            self.ip("-n", ns, "link", "set", self.taps[index], "up")
            self.ip("-n", ns, "route", "add", "default", "via", FIREWALL[index])
        # Forward, and no per-destination ICMP error limit (unifw has only a
        # global one, as Linux's icmp_msgs_per_sec): probes come in bursts.
        # Strict reverse-path filtering, unifw's default (a namespace starts
        # with 0; distributions set 1 or 2 in sysctl.d).
        sh(["ip", "netns", "exec", self.linuxfw, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv4.icmp_ratelimit=0", "net.ipv4.conf.all.rp_filter=1"])
        started = time.monotonic()
        with open(rules) as rules_file:
            sh(["ip", "netns", "exec", self.linuxfw, *restore], stdin=rules_file, timeout=timeout)
        seconds = time.monotonic() - started
        if not (self.ping(self.sender, FIREWALL[0], 5) and self.ping(self.receiver, FIREWALL[1], 5)):
            raise LabError("the Linux namespace firewall does not answer")
        return seconds

    def down(self):
        """Kills every process the lab started and removes its namespaces
        (with whatever still runs in them) and taps."""
        with _signals_held():
            self.stop()
            for ns in (self.sender, self.receiver, self.mgmt, self.linuxfw):
                if not os.path.exists(f"/run/netns/{ns}"):
                    continue
                # Processes left in the namespace (a DHCP server, iperf3) go too.
                _, pids = output_of(as_root(["ip", "netns", "pids", ns]))
                for pid in pids.split():
                    sh(["kill", pid], check=False)
                sh(["ip", "netns", "del", ns], check=False)
            for tap in self.taps:
                if os.path.exists(f"/sys/class/net/{tap}"):
                    sh(["ip", "link", "del", tap], check=False)

    # Traffic.

    def run(self, ns, command, timeout=None, merge=True):
        """(exit status, output) of COMMAND run inside namespace NS (see
        `output_of`)."""
        return output_of(in_ns(ns, command), timeout=timeout, merge=merge)

    def ping(self, ns, address, timeout):
        """True once ADDRESS answers a ping from NS, within TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(ns, ["ping", "-c1", "-W1", "-q", address])[0] == 0:
                return True
            time.sleep(0.1)
        return False


def main():
    """The command line: install-deps (for .ci/run)."""
    parser = argparse.ArgumentParser(description="The unifw lab driver (see the module docstring).")
    commands = parser.add_subparsers(dest="command", required=True)
    deps = commands.add_parser("install-deps", help="install the Debian packages and the Rust target")
    deps.add_argument("--update", action="store_true", help="run apt-get update first in any case")
    deps.add_argument("groups", nargs="*", metavar="GROUP",
                      help=f"what the packages are for: {', '.join(GROUPS)} (default: all but perf)")
    args = parser.parse_args()
    unknown = [group for group in args.groups if group not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]} ({', '.join(GROUPS)})")
    try:
        # perf only serves bench-forward --breakdown, which installs it itself.
        install_deps(args.groups or [g for g in GROUPS if g != "perf"], update=args.update, strict=True)
    except (LabError, subprocess.CalledProcessError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
