# shellcheck shell=bash
# The lab of ../shared/CONVENTIONS.md, and how QEMU boots unifw in it.
# Sourced by scripts/run, scripts/test and scripts/launch-time.
#
#   sender ns (10.1.0.2/24) --tap0-- [eth0 10.1.0.1  unifw  eth1 10.2.0.1] --tap1-- receiver ns (10.2.0.2/24)
#
# Each guest NIC is a virtio-net device on a tap. A tap is created and set up
# in the root namespace, QEMU opens it, and once QEMU holds it (the carrier
# comes up) it is moved into the sender's or receiver's namespace.

UNIFW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${UNIFW_LAB:-unifw}
SENDER_NS=$LAB-sender
RECEIVER_NS=$LAB-receiver
MGMT_NS=$LAB-mgmt
TAP=("$LAB-t0" "$LAB-t1" "$LAB-t2")
NS_OF_TAP=("$SENDER_NS" "$RECEIVER_NS")
HOST_ADDR=(10.1.0.2/24 10.2.0.2/24)
FIREWALL_ADDR=(10.1.0.1 10.2.0.1)
KERNEL=${CARGO_TARGET_DIR:-$UNIFW_ROOT/target}/x86_64-unknown-none/release/unifw
QBOOT=/usr/share/qemu/qboot.rom

die() { echo "error: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs what is missing: QEMU, the lab's tools, and the Rust target.
ensure_deps() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v python3 >/dev/null || missing+=(python3)
    [ -e "$QBOOT" ] || missing+=(qemu-system-data)
    if [ ${#missing[@]} -gt 0 ]; then
        note "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if command -v rustup >/dev/null; then
        (cd "$UNIFW_ROOT" && rustup target add x86_64-unknown-none >/dev/null 2>&1) || true
    fi
}

# Installs extra Debian packages by command name ("cmd:package" pairs).
ensure_tools() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        note "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Builds the kernel image (UNIFW_RULES picks the rules file).
build_kernel() {
    (cd "$UNIFW_ROOT" && cargo build --release --quiet) || die "kernel build failed"
}

# kvm when /dev/kvm works and runs guests natively, tcg otherwise.
# UNIFW_ACCEL=kvm|tcg overrides. Under kvm_pvm (KVM without hardware
# virtualisation, as on these machines) a guest that is not PVM-aware has
# every instruction emulated: measured here ~2000x slower than native and
# far slower than TCG, so it does not count as usable.
choose_accel() {
    if [ -n "${UNIFW_ACCEL:-}" ]; then echo "$UNIFW_ACCEL"; return; fi
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] \
        && grep -qwE 'vmx|svm' /proc/cpuinfo; then
        echo kvm
    else
        echo tcg
    fi
}

# qemu_args MACHINE ACCEL NICS APPEND: fills the array QEMU_ARGS.
# MACHINE: microvm (virtio-mmio), q35 or pc (virtio-pci; both boot the PVH
# entry through qboot), pc-legacy (pc with legacy-only virtio-pci devices).
qemu_args() {
    local machine=$1 accel=$2 nics=$3 append=$4 i device
    QEMU_ARGS=(-nodefaults -no-user-config -display none -no-reboot -m "${UNIFW_MEM:-128M}")
    case $accel in
        kvm) QEMU_ARGS+=(-accel kvm -cpu host,-arch-capabilities) ;;
        *) QEMU_ARGS+=(-accel tcg) ;;
    esac
    case $machine in
        microvm) QEMU_ARGS+=(-M microvm); device=virtio-net-device ;;
        q35) QEMU_ARGS+=(-M q35 -bios "$QBOOT"); device=virtio-net-pci ;;
        pc) QEMU_ARGS+=(-M pc -bios "$QBOOT"); device=virtio-net-pci ;;
        pc-legacy) QEMU_ARGS+=(-M pc -bios "$QBOOT"); device=virtio-net-pci,disable-modern=on ;;
        *) die "unknown machine $machine (microvm, q35, pc, pc-legacy)" ;;
    esac
    QEMU_ARGS+=(-kernel "$KERNEL")
    [ -n "$append" ] && QEMU_ARGS+=(-append "$append")
    for ((i = 0; i < nics; i++)); do
        QEMU_ARGS+=(-netdev "tap,id=n$i,ifname=${TAP[$i]},script=no,downscript=no"
            -device "$device,netdev=n$i,mac=52:54:00:00:01:0$i")
    done
}

# Creates the namespaces and the taps (up, in the root namespace).
lab_up() {
    local nics=${1:-2} i
    lab_down
    as_root ip netns add "$SENDER_NS"
    as_root ip netns add "$RECEIVER_NS"
    for ns in "$SENDER_NS" "$RECEIVER_NS"; do
        as_root ip -n "$ns" link set lo up
    done
    for ((i = 0; i < nics; i++)); do
        as_root ip tuntap add dev "${TAP[$i]}" mode tap
        as_root ip link set "${TAP[$i]}" up
    done
}

# Waits until QEMU holds the taps, then moves them into the namespaces and
# addresses them. Fails after TIMEOUT seconds (default 20).
lab_attach() {
    local timeout=${1:-20} i ns
    local deadline=$((SECONDS + timeout))
    for i in 0 1; do
        while ip link show "${TAP[$i]}" 2>/dev/null | grep -q NO-CARRIER; do
            [ $SECONDS -lt $deadline ] || die "QEMU did not open ${TAP[$i]} within ${timeout}s"
            sleep 0.005
        done
        ip link show "${TAP[$i]}" >/dev/null 2>&1 || die "${TAP[$i]} vanished (did QEMU exit?)"
        ns=${NS_OF_TAP[$i]}
        as_root ip link set "${TAP[$i]}" netns "$ns"
        as_root ip -n "$ns" addr add "${HOST_ADDR[$i]}" dev "${TAP[$i]}"
        as_root ip -n "$ns" link set "${TAP[$i]}" up
        as_root ip -n "$ns" route add default via "${FIREWALL_ADDR[$i]}"
    done
}

# Removes the namespaces (and the taps inside) and any tap left behind.
lab_down() {
    local t ns
    for ns in "$SENDER_NS" "$RECEIVER_NS" "$MGMT_NS"; do
        if [ -e "/run/netns/$ns" ]; then
            # Processes left in the namespace (a DHCP server, iperf3) go too.
            as_root ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        fi
        as_root ip netns del "$ns" 2>/dev/null || true
    done
    for t in "${TAP[@]}"; do
        as_root ip link del "$t" 2>/dev/null || true
    done
}

# in_ns NS CMD...: runs CMD inside namespace NS.
in_ns() {
    local ns=$1; shift
    as_root ip netns exec "$ns" "$@"
}

# wait_for_ping NS ADDR TIMEOUT: true once ADDR answers a ping from NS.
wait_for_ping() {
    local ns=$1 addr=$2 timeout=$3 deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        in_ns "$ns" ping -c1 -W1 -q "$addr" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
