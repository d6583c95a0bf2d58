#!/usr/bin/env python3
"""Launch time of unifw: QEMU process start -> first ICMP echo reply from
10.1.0.1, measured from the lab's sender namespace.

QEMU runs inside the sender namespace, so its tap is created there, already
addressed, and pings can start before QEMU does: nothing waits on moving a
tap. A static neighbour entry for the firewall's MAC keeps Linux's ARP retry
timer (1 s) out of the measurement. Echo requests go out every millisecond
from a raw socket; the first reply stops the clock.

Usage: launch_time.py KERNEL RUNS CONFIG [CONFIG...]   (CONFIG = machine/accel)
Prints a table of the median, min and max in milliseconds.
"""
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import time

NS = "unifw-launch"
TAP = "unifw-lt0"
FIREWALL = "10.1.0.1"
SENDER = "10.1.0.2/24"
MAC = "52:54:00:00:01:00"
QBOOT = "/usr/share/qemu/qboot.rom"
DEADLINE_S = 30


def sh(*args, check=True):
    subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def lab_up():
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    sh("ip", "-n", NS, "tuntap", "add", "dev", TAP, "mode", "tap")
    sh("ip", "-n", NS, "addr", "add", SENDER, "dev", TAP)
    sh("ip", "-n", NS, "link", "set", TAP, "up")
    sh("ip", "-n", NS, "neigh", "replace", FIREWALL, "lladdr", MAC, "dev", TAP, "nud", "permanent")


def lab_down():
    sh("ip", "netns", "del", NS, check=False)


def qemu_command(kernel, machine, accel):
    cmd = ["ip", "netns", "exec", NS, "qemu-system-x86_64", "-nodefaults", "-no-user-config",
           "-display", "none", "-no-reboot", "-m", "128M", "-serial", "null", "-kernel", kernel]
    cmd += ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] if accel == "kvm" else ["-accel", "tcg"]
    if machine == "microvm":
        cmd += ["-M", "microvm"]
        device = "virtio-net-device"
    else:
        cmd += ["-M", machine, "-bios", QBOOT]
        device = "virtio-net-pci"
    cmd += ["-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
            "-device", f"{device},netdev=n0,mac={MAC}"]
    return cmd


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident, seq):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header), ident, seq)


def one_boot(kernel, machine, accel):
    """Returns milliseconds from QEMU start to the first echo reply."""
    lab_up()
    # The pinger runs in the namespace: re-exec this script there.
    pinger = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, __file__, "--ping"],
                              stdout=subprocess.PIPE, text=True)
    ready = pinger.stdout.readline()  # "ready" once the socket is open
    assert ready.strip() == "ready", ready
    start = time.monotonic()
    qemu = subprocess.Popen(qemu_command(kernel, machine, accel),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        line = pinger.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"no echo reply within {DEADLINE_S} s ({machine}/{accel})")
        return (float(line) - start) * 1000.0
    finally:
        qemu.kill()
        qemu.wait()
        pinger.kill()
        pinger.wait()
        lab_down()


def ping_until_reply():
    """Child mode: ping the firewall every millisecond; print the monotonic
    time of the first reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    deadline = time.monotonic() + DEADLINE_S
    seq = 0
    while time.monotonic() < deadline:
        seq = (seq + 1) & 0xFFFF
        try:
            sock.sendto(echo_request(ident, seq), (FIREWALL, 0))
        except OSError:
            pass
        readable, _, _ = select.select([sock], [], [], 0.001)
        while readable:
            packet, (source, _) = sock.recvfrom(2048)
            now = time.monotonic()
            ihl = (packet[0] & 0x0F) * 4
            kind, _, _, reply_ident, _ = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
            if source == FIREWALL and kind == 0 and reply_ident == ident:
                print(f"{now:.6f}", flush=True)
                return
            readable, _, _ = select.select([sock], [], [], 0)
    print("", flush=True)


def main():
    if sys.argv[1:] == ["--ping"]:
        ping_until_reply()
        return
    kernel, runs, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print(f"launch time: QEMU start -> first echo reply from {FIREWALL}, {runs} boots each (ms)")
    print(f"{'machine':<10} {'accel':<6} {'median':>8} {'min':>8} {'max':>8}")
    for config in configs:
        machine, accel = config.split("/")
        samples = [one_boot(kernel, machine, accel) for _ in range(runs)]
        print(f"{machine:<10} {accel:<6} {statistics.median(samples):8.1f} {min(samples):8.1f} {max(samples):8.1f}",
              flush=True)


if __name__ == "__main__":
    main()
