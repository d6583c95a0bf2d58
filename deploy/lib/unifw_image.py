"""What the deployment artifacts say about one unifw disk image
(images/unifw-N.qcow2 from scripts/build-images): its sizes, checksum,
ruleset identity and the guest RAM it needs. Shared by
deploy/openstack/upload-image (Glance properties) and deploy/nfv/make-vnfd
(the SOL006 sw-image-desc and virtual-compute-desc), so both say the same.
"""

import hashlib
import math
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Minimum guest RAM, MiB: the one place for these numbers. Measured with
# scripts/min-ram (the smallest -m with which the disk boots on pc+SeaBIOS,
# answers, forwards and logs no error, e.g. receive buffers running short):
# 22 MiB with one rule, 73 MiB with 1,000,000 rules (README, "Images per
# ruleset"). Glance gets these with room for other firmware (OVMF takes
# more of the guest's memory than SeaBIOS; UEFI at 1M rules was not
# measured) and for a cloud's flavours.
MIN_RAM_MIB_ONE_RULE = 64
MIN_RAM_MIB_MILLION_RULES = 128
MILLION = 1_000_000

MIB = 1 << 20
GIB = 1 << 30
IDENTITY = re.compile(r"[0-9a-f]{16}")


class ImageError(Exception):
    """The image file is missing, is not what it should be, or its identity
    cannot be read; the message says which."""


@dataclass
class Identity:
    """The ruleset inside an image: its identity (the tables hash the kernel
    prints at boot) and its rule count, None when not read from the image."""
    identity: str
    rules: int | None


def min_ram_mib(rules):
    """Minimum guest RAM (MiB) for an image with RULES rules (input and
    forward): linear between the one-rule and the million-rule values (what
    grows with the rules is linear in them: the tables loaded with the
    kernel and the per-rule hit counters), to the nearest MiB (the two
    values are not more precise than that), never below the one-rule value.
    Unknown (None): the million-rule value, the safe side."""
    if rules is None:
        return MIN_RAM_MIB_MILLION_RULES
    span = MIN_RAM_MIB_MILLION_RULES - MIN_RAM_MIB_ONE_RULE
    return MIN_RAM_MIB_ONE_RULE + round(span * max(rules - 1, 0) / (MILLION - 1))


def check_file(path):
    """PATH as a Path, or ImageError saying why it cannot be an image."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file (build it with `scripts/build-images`, e.g. "
                         "`scripts/build-images 1` gives images/unifw-1.qcow2)")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    return path


def qcow2_virtual_size(path):
    """The virtual disk size (bytes) in PATH's qcow2 header (big-endian:
    magic 'QFI\\xfb', version, ..., size at byte 24); ImageError if PATH is
    not a qcow2 file."""
    path = check_file(path)
    with open(path, "rb") as f:
        header = f.read(32)
    if len(header) < 32 or header[:4] != b"QFI\xfb":
        raise ImageError(f"{path}: not a qcow2 image (scripts/build-images writes images/unifw-N.qcow2)")
    version, = struct.unpack(">I", header[4:8])
    if version not in (2, 3):
        raise ImageError(f"{path}: qcow2 version {version}, expected 2 or 3")
    size, = struct.unpack(">Q", header[24:32])
    if size == 0:
        raise ImageError(f"{path}: qcow2 virtual size is 0")
    return size


def min_disk_gib(path):
    """Glance's min_disk for PATH: its virtual size in GiB, rounded up."""
    return max(1, math.ceil(qcow2_virtual_size(path) / GIB))


def sha256(path):
    """The SHA-256 of the file at PATH, hex."""
    digest = hashlib.sha256()
    with open(check_file(path), "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_identify(text):
    """Identity from the output of `scripts/rules identify`, or None."""
    rules = re.search(r"^rules:\s+(\d+) \(", text, re.M)
    identity = re.search(r"^identity:\s+([0-9a-f]{16}) \(verified\)", text, re.M)
    if not rules or not identity:
        return None
    return Identity(identity.group(1), int(rules.group(1)))


def read_identity(path):
    """The ruleset identity inside the qcow2 disk PATH, verified: the disk
    is converted to raw (qemu-img) in a temporary directory and
    `scripts/rules identify` reads the kernel's rules image from it, so the
    identity is the one of the disk that is uploaded, not of a kernel built
    beside it."""
    path = check_file(path)
    qcow2_virtual_size(path)
    if not shutil.which("qemu-img"):
        raise ImageError("qemu-img is missing (`python3 scripts/lib/lab.py install-deps images`), "
                         "or give --identity")
    with tempfile.TemporaryDirectory(prefix="unifw-identify.") as scratch:
        raw = Path(scratch) / "disk.raw"
        converted = subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(raw)],
                                   capture_output=True, text=True)
        if converted.returncode != 0:
            raise ImageError(f"{path}: qemu-img convert failed: {converted.stderr.strip()}")
        result = subprocess.run([str(ROOT / "scripts" / "rules"), "identify", str(raw)], cwd=ROOT,
                                capture_output=True, text=True)
    found = parse_identify(result.stdout) if result.returncode == 0 else None
    if found is None:
        detail = (result.stderr or result.stdout).strip().replace(str(raw), str(path))
        raise ImageError(f"{path}: no verified ruleset identity inside: {detail}")
    return found


def rules_interfaces(path):
    """{ethN: (address, mac)} from the `interface` lines of the native rules
    file PATH (rules/README.md): address is the form's first word (A/L,
    `dhcp`, `none`; a DHCP fallback is not needed here), mac the MAC the
    name is bound to, or None. A file without them (iptables-save) gives {}."""
    found = {}
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "interface":
            continue
        mac = None
        rest = words[2:]
        if rest[0] == "mac" and len(rest) >= 3:
            mac, rest = rest[1], rest[2:]
        found[words[1]] = (rest[0], mac)
    return found


def identity_from_option(value):
    """An Identity from a --identity option (16 lowercase hex digits)."""
    if not IDENTITY.fullmatch(value or ""):
        raise ImageError(f"--identity {value!r}: expected 16 lowercase hex digits, as `scripts/rules identify` "
                         "prints it")
    return Identity(value, None)
