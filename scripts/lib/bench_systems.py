"""The systems scripts/bench compares, each standing in the lab between the
sender and the receiver with the same scenario rules (CONVENTIONS.md):

  unifw      the kernel built with the rules (lab.build_kernel), microvm
  vm         Debian's Linux with iptables-legacy in a minimal initramfs
             (linux_vm.py), microvm, the same NICs and accelerator
  container  a network namespace routing between veth pairs, rules loaded
             with iptables-legacy-restore (lab.linuxfw_up)
  nftables   the same namespace, the rules translated by
             iptables-restore-translate and loaded with `nft -f`
  bounce     not a firewall and not in the default set: unifw booted with
             `unifw.path=bounce` (frames cross between the NICs with only
             their MACs rewritten), the platform's own limit, to tell
             unifw's cost from QEMU's and the host's

Each system builds its image (`prepare`: the image size, or None where
there is none), comes up for traffic (`up`), measures its own launch time
and smallest memory with the lab down, and reads the host CPU seconds it
has used (`cpu_seconds`).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bench_measure
import lab
import linux_vm

LAUNCH_TIME = lab.ROOT / "scripts" / "launch-time"
SYSTEMS = ("unifw", "container", "nftables", "vm")
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid):
    """User + system CPU seconds of process PID so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def kernel_cpu():
    """System + irq + softirq CPU seconds of the whole host so far: where a
    namespace firewall's work is done (no process of its own)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[2]) + int(fields[5]) + int(fields[6])) / TICK


def launch_ms(the_lab, command, deadline):
    """QEMU start -> first echo reply from 10.1.0.1 (ms), as
    scripts/launch-time measures it: QEMU (COMMAND, one tap) runs inside the
    sender's namespace, pinged every millisecond by launch-time's pinger.
    OverCap if no reply comes within DEADLINE seconds."""
    the_lab.up_inside_sender()
    try:
        pinger = the_lab.start([sys.executable, str(LAUNCH_TIME), "--ping", "--deadline", str(deadline)],
                               ns=the_lab.sender, stdout=subprocess.PIPE)
        if pinger.stdout.readline().strip() != "ready":
            raise lab.LabError("launch-time's pinger did not start")
        start = time.monotonic()
        the_lab.boot(command, ns=the_lab.sender)
        line = pinger.stdout.readline().strip()
        if not line:
            raise bench_measure.OverCap(f"no echo reply within {deadline} s")
        return (float(line) - start) * 1000.0
    finally:
        the_lab.down()


class System:
    """What every system does; subclasses fill in the rest."""
    name = ""
    qemu_pid = None

    def __init__(self, the_lab, accel, out_dir):
        """A system in THE_LAB with ACCEL; images and consoles in OUT_DIR."""
        self.lab = the_lab
        self.accel = accel
        self.dir = Path(out_dir)
        self.rules = None
        self.n = None

    def prepare(self, n, rules):
        """Builds what N's RULES need; the image size in bytes, or None."""
        self.n, self.rules = n, rules
        return None

    def cpu_seconds(self):
        """Host CPU seconds this system has used so far."""
        return process_cpu(self.qemu_pid) if self.qemu_pid else kernel_cpu()

    def memory(self, resolution=1, cap=None):
        """Smallest guest RAM (MiB) that passes, to RESOLUTION MiB, or None
        (not measurable); OverCap if even the most does not come up within
        CAP seconds."""
        return None

    def down(self):
        """Takes the lab down."""
        self.qemu_pid = None
        self.lab.down()


class Unifw(System):
    """unifw, one kernel image per N."""
    name = "unifw"
    # More kernel command line.
    append = ""

    def prepare(self, n, rules):
        """Builds the kernel with RULES, kept as OUT_DIR/images/unifw-N.elf."""
        super().prepare(n, rules)
        self.image = self.dir / "images" / f"unifw-{n}.elf"
        self.image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lab.build_kernel(rules), self.image)
        return self.image.stat().st_size

    def command(self, taps, serial="null"):
        """QEMU's command line with the image on TAPS."""
        return lab.qemu_command("microvm", self.accel, taps, kernel=self.image, append=self.append, serial=serial)

    def up(self, timeout):
        """Booted, attached, answering and forwarding."""
        console = self.dir / f"unifw-{self.n}.log"
        os.environ["UNIFW_MEM"] = os.environ.get("UNIFW_BENCH_MEM", "512M")
        self.lab.up(2)
        self.qemu_pid = self.lab.boot(self.command(self.lab.taps[:2], f"file:{console}"), console=console).pid
        self.lab.attach(60)
        if not (self.lab.ping(self.lab.sender, lab.FIREWALL[0], timeout)
                and self.lab.ping(self.lab.sender, lab.HOSTS[1], 10)):
            raise lab.LabError(f"unifw N={self.n} does not forward; console {console}")

    def launch_time(self, cap):
        """Launch time in ms (OverCap past CAP seconds)."""
        os.environ["UNIFW_MEM"] = os.environ.get("UNIFW_BENCH_MEM", "512M")
        return launch_ms(self.lab, self.command(self.lab.taps[:1]), cap)

    def memory(self, resolution=1, cap=None):
        """scripts/min-ram's answer for the image, to RESOLUTION MiB (more
        than 1: a coarse search, with a 1 s settle)."""
        self.lab.down()
        coarse = ["--resolution", str(resolution), "--settle", "1"] if resolution > 1 else []
        _, out = lab.output_of([sys.executable, str(lab.ROOT / "scripts" / "min-ram"), str(self.image), *coarse])
        found = [line for line in out.splitlines() if line.startswith(f"| {self.image.name} |")]
        return float(found[0].split("|")[2].split()[0]) if found else None


class Bounce(Unifw):
    """unifw on the bounce path: what QEMU, virtio-net and the host cost
    with no firewall work (its memory is unifw's: not measured)."""
    name = "bounce"
    append = "unifw.path=bounce"

    def memory(self, resolution=1, cap=None):
        """Not measured (the same image as unifw's)."""
        return None


class LinuxVm(System):
    """Debian's Linux with iptables in a minimal initramfs, one per N."""
    name = "vm"

    def prepare(self, n, rules):
        """The initramfs with RULES; kernel + initramfs bytes."""
        super().prepare(n, rules)
        out = self.dir / "images" / f"linux-vm-{n}.initrd"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.vmlinuz, self.initrd, _ = linux_vm.build(rules, out)
        return self.vmlinuz.stat().st_size + self.initrd.stat().st_size

    def command(self, taps, serial="null"):
        """QEMU's command line on TAPS."""
        return linux_vm.qemu_command("microvm", self.accel, taps, self.vmlinuz, self.initrd, serial=serial)

    def boot(self, timeout, mem=None):
        """Booted with MEM (default linux_vm.memory) until ready."""
        console = self.dir / f"linux-vm-{self.n}.log"
        os.environ["UNIFW_MEM"] = mem or linux_vm.memory(self.rules)
        self.lab.up(2)
        qemu = self.lab.boot(self.command(self.lab.taps[:2], f"file:{console}"), console=console)
        self.qemu_pid = qemu.pid
        self.lab.attach(60)
        linux_vm.wait_ready(console, qemu, timeout)

    def up(self, timeout):
        """Booted, ready and forwarding."""
        self.boot(timeout)
        if not self.lab.ping(self.lab.sender, lab.HOSTS[1], 20):
            raise lab.LabError(f"the Linux VM N={self.n} does not forward")

    def launch_time(self, cap):
        """Launch time in ms, to the first reply with the rules loaded
        (the guest's eth1 is absent: one tap); OverCap past CAP seconds."""
        os.environ["UNIFW_MEM"] = linux_vm.memory(self.rules)
        console = self.dir / f"linux-vm-{self.n}-launch.log"
        return launch_ms(self.lab, self.command(self.lab.taps[:1], f"file:{console}"), cap)

    def passes(self, mib, timeout=120):
        """Whether the guest boots with MIB MiB, loads the rules within
        TIMEOUT seconds and forwards."""
        try:
            self.boot(timeout, f"{mib}M")
            return self.lab.ping(self.lab.sender, lab.HOSTS[1], 10)
        except lab.LabError:
            return False
        finally:
            self.down()

    def memory(self, resolution=1, cap=None):
        """Smallest -m (MiB) that passes, by bisection from 16 to the
        default size (as scripts/min-ram searches unifw's), to RESOLUTION
        MiB (the answer passes; up to RESOLUTION - 1 MiB less may too).
        OverCap if the default size is not ready within CAP seconds (then
        the search could not tell too little memory from too slow)."""
        low, high = 16, int(linux_vm.memory(self.rules).rstrip("M"))
        try:
            self.boot(cap or 120)
            ready = self.lab.ping(self.lab.sender, lab.HOSTS[1], 10)
        except linux_vm.NotReady as exc:
            raise bench_measure.OverCap(str(exc)) from exc
        except lab.LabError:
            ready = False
        finally:
            self.down()
        if not ready:
            return None
        while high - low > resolution:
            middle = (low + high) // 2
            if self.passes(middle):
                high = middle
            else:
                low = middle
        return high


class Namespace(System):
    """The "container" baseline: a namespace with iptables-legacy."""
    name = "container"
    restore = ("iptables-legacy-restore",)

    def loaded_rules(self):
        """The file the restore command reads."""
        return self.rules

    def up(self, timeout):
        """The namespace firewall with the rules loaded within TIMEOUT
        seconds (lab.NotReady otherwise)."""
        self.lab.linuxfw_up(self.loaded_rules(), restore=self.restore, timeout=timeout)
        if not self.lab.ping(self.lab.sender, lab.HOSTS[1], 10):
            raise lab.LabError(f"{self.name} N={self.n} does not forward")

    def launch_time(self, cap):
        """ms from creating the namespaces to the first echo reply through
        the loaded rules (no boot: namespaces, veths, restore, ping);
        OverCap if the rules take longer than CAP seconds to load."""
        started = time.monotonic()
        try:
            self.up(cap)
        except lab.NotReady as exc:
            self.down()
            raise bench_measure.OverCap(str(exc)) from exc
        elapsed = (time.monotonic() - started) * 1000.0
        self.down()
        return elapsed


class Nftables(Namespace):
    """The same namespace, the rules translated to nftables."""
    name = "nftables"
    restore = ("nft", "-f", "-")

    def loaded_rules(self):
        """iptables-restore-translate's output for the rules (kept)."""
        out = self.dir / f"rules-{self.n}.nft"
        if not out.exists():
            with open(out, "w") as text:
                subprocess.run(["iptables-restore-translate", "-f", str(self.rules)], stdout=text, check=True)
        return out


CLASSES = {cls.name: cls for cls in (Unifw, Namespace, Nftables, LinuxVm, Bounce)}
# What has no memory figure of its own, and why.
NO_MEMORY = {"container": "a namespace's kernel memory is not measurable apart from the host's",
             "nftables": "a namespace's kernel memory is not measurable apart from the host's",
             "bounce": "the same image as unifw's"}
