"""The "VM" baseline of CONVENTIONS.md: a Linux guest firewall built from
Debian's packages only, booted in the lab in unifw's place.

    kernel     vmlinuz of Debian's linux-image-amd64 (its versioned package,
               fetched with `apt-get download` and unpacked with dpkg-deb
               into the cache: nothing is installed into the host's /boot)
    initramfs  busybox (busybox-static), iptables' legacy backend
               (xtables-legacy-multi, its libraries found by ldd, the
               xtables extensions it dlopens), the kernel modules the
               NICs and the rules need (resolved with modules.dep) and
               /init, which names the NICs by MAC (eth0 = lab.mac(0)),
               addresses them as the lab's firewall (10.1.0.1/24,
               10.2.0.1/24), sets forwarding and rp_filter as
               lab.linuxfw_up does, loads the rules with iptables-restore
               and prints READY on the serial console.

The kernel, its modules and the userland are unpacked once into CACHE
(UNIFW_CACHE, default /var/cache/unifw/linux-vm); each rules file then
costs one initramfs: a shared gzip'd cpio of everything but the rules,
followed by a second gzip'd cpio with the rules (the kernel unpacks
concatenated archives in turn). Booted by `qemu_command`: lab.qemu_command
with the same machine, NICs and accelerator as unifw, plus -initrd.
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import lab

CACHE = Path(os.environ.get("UNIFW_CACHE", "/var/cache/unifw")) / "linux-vm"
BUSYBOX = "/usr/bin/busybox"
XTABLES = "/usr/sbin/xtables-legacy-multi"
XTABLES_EXT = "/usr/lib/x86_64-linux-gnu/xtables"
# The packages this baseline is made of (the kernel is unpacked, not installed).
PACKAGES = ("busybox-static", "iptables")
READY = "unifw-linux-vm: ready"
FAILED = "unifw-linux-vm: FAILED"
# Modules every image loads: the NICs (virtio-mmio on microvm, virtio-pci on
# q35/pc) and the iptables core; the rules add their matches and targets.
# crc32c_generic first: libcrc32c (nf_conntrack's) asks the crypto API for
# crc32c, a soft dependency modules.dep does not list.
BASE_MODULES = ("crc32c_generic", "virtio_mmio", "virtio_pci", "virtio_net", "ip_tables", "iptable_filter", "xt_tcpudp",
                "xt_conntrack", "xt_state", "xt_multiport", "ipt_REJECT", "xt_comment")
# Enough for the lab's rules and 128-rule initramfs; 1M rules (~100 MB of
# text, the kernel's copy, iptables-restore's) need far more: see `memory`.
DEFAULT_MEM = "256M"
# loglevel 5: warnings (a module's "Unknown symbol", "nf_conntrack: table full")
# reach the console, notices and the boot chatter do not.
CMDLINE = "console=ttyS0 panic=-1 loglevel=5"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mkdir -p /run /tmp; mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read m; do insmod /lib/modules/$m 2>/dev/null; done < /modules.order
# NICs by MAC, as the lab gives them (eth0 = sender's side); the tap
# order on QEMU's command line need not be the probe order.
for dev in /sys/class/net/*; do
  n=${dev##*/}; [ "$n" = lo ] || ip link set "$n" name "tmp$n"
done
for dev in /sys/class/net/tmp*; do
  case $(cat $dev/address) in
    @MAC0@) ip link set ${dev##*/} name eth0 ;;
    @MAC1@) ip link set ${dev##*/} name eth1 ;;
  esac
done
ip link set lo up
# As lab.linuxfw_up: forward, no per-destination ICMP limit, strict rp_filter.
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0 net.ipv4.conf.all.rp_filter=1
sysctl -qw net.ipv4.conf.default.rp_filter=1 net.ipv4.conf.eth0.rp_filter=1 net.ipv4.conf.eth1.rp_filter=1 2>/dev/null
# unifw's default connection table (`conntrack max 65536`), not the kernel's
# RAM-sized one (a few thousand at 256 MiB: full after a second of tcp_crr).
if [ -d /proc/sys/net/netfilter ]; then
  echo 16384 > /sys/module/nf_conntrack/parameters/hashsize
  sysctl -qw net.netfilter.nf_conntrack_max=65536
fi
start=$(cut -d' ' -f1 /proc/uptime)
if iptables-restore < /rules.ipt; then
  loaded=$(cut -d' ' -f1 /proc/uptime)
  # Addresses only now: the first echo reply (launch time) comes with the
  # rules loaded, as unifw's and the namespaces' do.
  ip addr add @FW0@/24 dev eth0 && ip link set eth0 up
  ip addr add @FW1@/24 dev eth1 2>/dev/null && ip link set eth1 up
  echo "@READY@ ($(grep -c '^-A' /rules.ipt) rules, loaded from $start s to $loaded s of uptime)"
else
  echo "@FAILED@: iptables-restore"
fi
exec sh -c 'while :; do sleep 3600; done'
"""


class NotReady(lab.NotReady):
    """The guest did not print its ready line in time (scripts/bench
    records that as over its cap: loading 1M rules under TCG is slow)."""


# --- The kernel and its modules, from Debian's package ------------------------

def kernel_package():
    """The versioned package linux-image-amd64 depends on (linux-image-X-amd64)."""
    _, out = lab.output_of(["apt-cache", "depends", "linux-image-amd64"])
    found = re.search(r"Depends: (linux-image-[0-9][^\s]*)", out)
    if not found:
        raise lab.LabError("apt-cache knows no linux-image-amd64 (apt-get update?)")
    return found.group(1)


def unpacked_kernel():
    """The unpacked kernel package (CACHE/PACKAGE/root): fetched and unpacked
    on first use, then reused. Returns (vmlinuz, modules directory)."""
    package = kernel_package()
    root = CACHE / package / "root"
    if not (root / "boot").is_dir():
        lab.note(f"unpacking Debian's {package} into {root} (once)")
        work = CACHE / package
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        subprocess.run(["apt-get", "download", "-q", package], cwd=work, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "partial")], check=True)
        deb.unlink()
        (work / "partial").rename(root)
    vmlinuz = next((root / "boot").glob("vmlinuz-*"))
    modules = next((root / "lib" / "modules").iterdir())
    return vmlinuz, modules


def modules_for(rules_text):
    """Module names the rules need beyond BASE_MODULES: each `*table`'s
    iptable_TABLE, each `-m MATCH` and `-j TARGET` (as xt_ or ipt_)."""
    names = list(BASE_MODULES)
    names += [f"iptable_{table}" for table in re.findall(r"^\*(\w+)", rules_text, re.MULTILINE)]
    for word in set(re.findall(r"(?:-m|-j|--jump|--match) (\w+)", rules_text)):
        names += [f"xt_{word}", f"ipt_{word}", f"xt_{word.lower()}"]
    return names


def modules_dep(modules_dir):
    """MODULES_DIR/modules.dep, written once from each module's `depends=`
    (its .modinfo strings) when the package has none: it is depmod's
    output at install time, and the host has no depmod. Format as
    depmod's: `kernel/PATH.ko: kernel/DEP.ko ...`."""
    dep_file = modules_dir / "modules.dep"
    if not dep_file.exists():
        paths = {}
        depends = {}
        for ko in sorted(modules_dir.rglob("*.ko")):
            path = str(ko.relative_to(modules_dir))
            paths[ko.name.removesuffix(".ko").replace("-", "_")] = path
            found = re.search(rb"\0depends=([^\0]*)\0", ko.read_bytes())
            depends[path] = found.group(1).decode().split(",") if found and found.group(1) else []
        lines = [f"{path}: {' '.join(paths[d.replace('-', '_')] for d in needs if d.replace('-', '_') in paths)}"
                 for path, needs in depends.items()]
        partial = dep_file.with_suffix(".partial")
        partial.write_text("\n".join(lines) + "\n")
        partial.rename(dep_file)
    deps = {}
    for line in dep_file.read_text().splitlines():
        path, _, needs = line.partition(":")
        deps[path] = needs.split()
    return deps


def load_order(modules_dir, names):
    """Paths (relative to MODULES_DIR) of the NAMES that exist and of what
    they depend on (modules.dep), each after its dependencies."""
    deps = modules_dep(modules_dir)
    by_name = {Path(path).name.removesuffix(".ko").replace("-", "_"): path for path in deps}
    order = []

    def visit(path):
        """Depth first: dependencies before PATH."""
        if path in order:
            return
        for need in deps.get(path, ()):
            visit(need)
        order.append(path)
    for name in names:
        if name in by_name:
            visit(by_name[name])
    return order


# --- The initramfs -----------------------------------------------------------

def _cpio_entry(out, name, mode, data=b"", ino=[0]):  # noqa: B006 (a counter)
    """One newc cpio entry NAME with MODE and DATA."""
    ino[0] += 1
    header = f"070701{ino[0]:08x}{mode:08x}{0:08x}{0:08x}{1:08x}{0:08x}{len(data):08x}" + "0" * 32
    header += f"{len(name) + 1:08x}{0:08x}"
    out.write(header.encode() + name.encode() + b"\0")
    out.write(b"\0" * (-(110 + len(name) + 1) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def cpio(entries):
    """A newc cpio archive (bytes) of ENTRIES: (name, mode, data)."""
    out = io.BytesIO()
    for name, mode, data in entries:
        _cpio_entry(out, name, mode, data)
    _cpio_entry(out, "TRAILER!!!", 0)
    return out.getvalue()


def _libraries(binaries):
    """Shared libraries (and the loader) of BINARIES, by ldd."""
    found = set()
    for binary in binaries:
        _, out = lab.output_of(["ldd", str(binary)])
        found.update(re.findall(r"(/\S+\.so[.\d]*) \(0x", out))
    return sorted(found)


def _file(name, path, mode=None):
    """A cpio entry NAME holding file PATH (its mode unless MODE)."""
    return name, stat.S_IFREG | (mode if mode is not None else Path(path).stat().st_mode & 0o777), \
        Path(path).read_bytes()


def base_archive(extra_modules):
    """The gzip'd cpio of everything but the rules, cached per module set."""
    vmlinuz, modules_dir = unpacked_kernel()
    order = load_order(modules_dir, list(BASE_MODULES) + sorted(extra_modules))
    key = hashlib.sha256("\n".join([INIT, BUSYBOX, XTABLES, *order]).encode()).hexdigest()[:12]
    cached = CACHE / f"base-{modules_dir.name}-{key}.cpio.gz"
    if cached.exists():
        return vmlinuz, cached
    lab.install_deps(("linux-vm",))
    extensions = sorted(p for p in Path(XTABLES_EXT).glob("*.so") if p.name.startswith(("libxt_", "libipt_")))
    entries = [(d, stat.S_IFDIR | 0o755, b"") for d in ("bin", "sbin", "proc", "sys", "dev", "lib", "lib64", "usr",
                                                         "usr/lib", "usr/lib/x86_64-linux-gnu", XTABLES_EXT[1:],
                                                         "lib/x86_64-linux-gnu", "lib/modules")]
    entries.append(_file("bin/busybox", BUSYBOX))
    entries.append(_file("sbin/xtables-legacy-multi", XTABLES))
    for name in ("iptables", "iptables-restore", "iptables-save"):
        entries.append((f"sbin/{name}", stat.S_IFLNK | 0o777, b"xtables-legacy-multi"))
    for library in _libraries([XTABLES, *extensions]):
        entries.append(_file(library.lstrip("/"), os.path.realpath(library)))
    entries += [_file(str(ext).lstrip("/"), ext) for ext in extensions]
    entries += [_file(f"lib/modules/{Path(path).name}", modules_dir / path) for path in order]
    entries.append(("modules.order", stat.S_IFREG | 0o644, "".join(f"{Path(p).name}\n" for p in order).encode()))
    init = INIT
    for key_, value in (("@MAC0@", lab.mac(0)), ("@MAC1@", lab.mac(1)), ("@FW0@", lab.FIREWALL[0]),
                        ("@FW1@", lab.FIREWALL[1]), ("@READY@", READY), ("@FAILED@", FAILED)):
        init = init.replace(key_, value)
    entries.append(("init", stat.S_IFREG | 0o755, init.encode()))
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(gzip.compress(cpio(entries), compresslevel=6))
    partial.rename(cached)
    return vmlinuz, cached


def build(rules, out):
    """The VM image for iptables-save file RULES: OUT (an initramfs: the
    cached base followed by the rules' archive); returns (vmlinuz, OUT,
    seconds the build took)."""
    started = time.monotonic()
    text = Path(rules).read_text()
    vmlinuz, base = base_archive(set(modules_for(text)) - set(BASE_MODULES))
    out = Path(out)
    with open(out, "wb") as image:
        image.write(base.read_bytes())
        image.write(gzip.compress(cpio([("rules.ipt", stat.S_IFREG | 0o644, text.encode())]), compresslevel=6))
    return vmlinuz, out, time.monotonic() - started


def tsc_options(accel):
    """Under TCG the guest's TSC is the host's, but microvm has no HPET or
    PM timer to calibrate it against, and PIT calibration fails on a busy
    host ("tsc: Unable to calibrate against PIT"), leaving the guest
    without a clocksource (it hangs): give the host's TSC rate instead."""
    if accel != "tcg":
        return ""
    with open("/proc/cpuinfo") as cpuinfo:
        found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo.read(), re.MULTILINE)
    return f" tsc_early_khz={int(float(found.group(1)) * 1000)} tsc=reliable" if found else ""


def qemu_command(machine, accel, taps, vmlinuz, initrd, serial="null"):
    """lab.qemu_command for the Linux guest: the same machine, NICs and
    accelerator as unifw's, with Debian's kernel and INITRD."""
    command = lab.qemu_command(machine, accel, taps, kernel=vmlinuz, append=CMDLINE + tsc_options(accel),
                               serial=serial)
    return command + ["-initrd", str(initrd)]


def memory(rules):
    """Guest RAM for RULES: DEFAULT_MEM, or for big rulesets room for the
    initramfs (twice: packed and unpacked), iptables-restore's parse and the
    kernel's tables, measured here at about 1.5 kB per rule in all."""
    count = Path(rules).read_text().count("\n-A ")
    mib = max(256, 192 + count * 3 // 2000)
    return os.environ.get("UNIFW_LINUX_MEM") or (DEFAULT_MEM if mib == 256 else f"{mib}M")


def wait_ready(console, qemu, timeout):
    """Waits for READY on CONSOLE; raises LabError on FAILED, a QEMU exit or
    TIMEOUT. Returns the ready line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = Path(console).read_text(errors="replace") if Path(console).exists() else ""
        for line in text.splitlines():
            if line.startswith(READY):
                return line.strip()
            if line.startswith(FAILED):
                raise lab.LabError(f"Linux VM: {line.strip()} (console {console})")
        if qemu is not None and qemu.poll() is not None:
            raise lab.LabError(f"Linux VM: QEMU exited ({qemu.returncode}); console {console}")
        time.sleep(0.2)
    raise NotReady(f"Linux VM: not ready within {timeout} s (console {console})")
