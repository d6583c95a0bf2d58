# shellcheck shell=bash
# Lab tests: boot the image in QEMU and check it from the lab's namespaces.
# Sourced by scripts/test after lab.sh. Every boot runs under a deadline,
# QEMU is killed when a check fails, and the lab is always torn down.

LABTEST_FAILURES=0
LABTEST_LOG_DIR=${LABTEST_LOG_DIR:-$(mktemp -d /tmp/unifw-labtest.XXXXXX)}
QEMU_PID=""

stop_qemu() {
    if [ -n "$QEMU_PID" ]; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
        QEMU_PID=""
    fi
}

labtest_cleanup() {
    stop_qemu
    lab_down
}

# boot_lab NAME MACHINE ACCEL APPEND [QEMU_EXTRA...]: boots in a fresh lab
# (console in $LABTEST_LOG_DIR/NAME.log) and attaches the taps.
boot_lab() {
    local name=$1 machine=$2 accel=$3 append=$4; shift 4
    CONSOLE=$LABTEST_LOG_DIR/$name.log
    lab_up 2
    qemu_args "$machine" "$accel" 2 "$append"
    # A hard deadline on QEMU itself, whatever happens to this script.
    timeout --signal=KILL 300 qemu-system-x86_64 "${QEMU_ARGS[@]}" "$@" -serial "file:$CONSOLE" 2>>"$CONSOLE.stderr" &
    QEMU_PID=$!
    lab_attach 60
}

pass() { echo "  ok   $*"; }
fail() {
    echo "  FAIL $*"
    LABTEST_FAILURES=$((LABTEST_FAILURES + 1))
    if [ -n "${CONSOLE:-}" ] && [ -f "$CONSOLE" ]; then
        echo "  --- console ($CONSOLE) ---"
        sed 's/^/  | /' "$CONSOLE" | tail -40
    fi
}

# expect_ping NS ADDR WHAT: the firewall answers within the boot deadline.
expect_ping() {
    if wait_for_ping "$1" "$2" "${BOOT_DEADLINE:-60}"; then pass "$3"; else fail "$3"; fi
}

# expect_no_ping NS ADDR WHAT: nothing answers for 3 seconds.
expect_no_ping() {
    if in_ns "$1" ping -c3 -i0.5 -W1 -q "$2" >/dev/null 2>&1; then fail "$3"; else pass "$3"; fi
}

# expect_console PATTERN WHAT: the console shows PATTERN (extended regex).
expect_console() {
    local deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE "$1" "$CONSOLE" 2>/dev/null && { pass "$2"; return; }
        sleep 0.2
    done
    fail "$2 (console lacks /$1/)"
}

expect_no_console() {
    if grep -qE "$1" "$CONSOLE" 2>/dev/null; then fail "$2 (console shows /$1/)"; else pass "$2"; fi
}

# test_boot_ping MACHINE ACCEL: boots and pings both firewall addresses.
test_boot_ping() {
    local machine=$1 accel=$2
    echo "lab: $machine ($accel): boot, ping eth0 and eth1"
    boot_lab "$machine-$accel" "$machine" "$accel" ""
    expect_ping "$SENDER_NS" 10.1.0.1 "$machine/$accel: sender pings 10.1.0.1 (eth0)"
    expect_ping "$RECEIVER_NS" 10.2.0.1 "$machine/$accel: receiver pings 10.2.0.1 (eth1)"
    expect_no_console "PANIC|ERROR" "$machine/$accel: no errors on the console"
    labtest_cleanup
}

# The kernel command line overrides the rules file, and a bad value leaves
# that NIC down with a message instead of a panic.
test_cmdline() {
    echo "lab: kernel command line overrides"
    boot_lab cmdline-override microvm tcg "unifw.eth1=10.2.0.9/24"
    expect_ping "$RECEIVER_NS" 10.2.0.9 "unifw.eth1=10.2.0.9/24: receiver pings 10.2.0.9"
    expect_no_ping "$RECEIVER_NS" 10.2.0.1 "unifw.eth1=10.2.0.9/24: 10.2.0.1 is gone"
    labtest_cleanup

    boot_lab cmdline-bad microvm tcg "unifw.eth1=10.2.0.1/33 unifw.colour=blue"
    expect_ping "$SENDER_NS" 10.1.0.1 "bad eth1 value: eth0 still answers"
    expect_console 'unifw\.eth1=10\.2\.0\.1/33.*left down' "bad eth1 value: clear message"
    expect_console 'unifw\.colour=blue.*unknown unifw option' "unknown option: clear message"
    expect_console 'eth1: down' "bad eth1 value: eth1 is down"
    expect_no_ping "$RECEIVER_NS" 10.2.0.1 "bad eth1 value: eth1 does not answer"
    expect_no_console "PANIC" "bad values: no panic"
    labtest_cleanup
}

# Multiboot2: GRUB (from an ISO, SeaBIOS, TCG: firmware is slow under this
# nested KVM) loads the same ELF.
test_multiboot2() {
    echo "lab: Multiboot2 through GRUB (q35, SeaBIOS, tcg)"
    local iso=$LABTEST_LOG_DIR/unifw-grub.iso dir=$LABTEST_LOG_DIR/iso
    mkdir -p "$dir/boot/grub"
    cp "$KERNEL" "$dir/boot/unifw"
    printf 'set timeout=0\nmenuentry unifw {\n  multiboot2 /boot/unifw unifw.log=info\n  boot\n}\n' >"$dir/boot/grub/grub.cfg"
    if ! grub-mkrescue -o "$iso" "$dir" --install-modules="multiboot2 normal configfile iso9660 biosdisk" \
        --fonts= --locales= --themes= >"$LABTEST_LOG_DIR/grub-mkrescue.log" 2>&1; then
        fail "grub-mkrescue (see $LABTEST_LOG_DIR/grub-mkrescue.log)"
        return
    fi
    lab_up 2
    CONSOLE=$LABTEST_LOG_DIR/multiboot2.log
    local nets=() i
    for i in 0 1; do
        nets+=(-netdev "tap,id=n$i,ifname=${TAP[$i]},script=no,downscript=no" -device "virtio-net-pci,netdev=n$i,mac=52:54:00:00:01:0$i")
    done
    timeout --signal=KILL 300 qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -m 128M \
        -accel tcg -M q35 -cdrom "$iso" -boot d "${nets[@]}" -serial "file:$CONSOLE" 2>>"$CONSOLE.stderr" &
    QEMU_PID=$!
    lab_attach 60
    expect_ping "$SENDER_NS" 10.1.0.1 "multiboot2: sender pings 10.1.0.1"
    expect_ping "$RECEIVER_NS" 10.2.0.1 "multiboot2: receiver pings 10.2.0.1"
    expect_console "booted via Multiboot2" "multiboot2: entered through the Multiboot2 header"
    expect_console "command line: unifw.log=info" "multiboot2: command line from GRUB"
    labtest_cleanup
}

# A long stream through the firewall: more than 65,536 frames each way
# (virtio ring indices wrap at 16 bits; virtio-drivers' event-index check
# once froze the stream right there). Without offloads every TCP segment is
# one frame, so 3 s of iperf3 moves well past the wrap.
test_sustained_stream() {
    echo "lab: a TCP stream of more than 65,536 frames (offloads off)"
    boot_lab stream microvm tcg "unifw.offload=off"
    expect_ping "$SENDER_NS" 10.1.0.1 "stream: firewall up"
    in_ns "$RECEIVER_NS" timeout 30 iperf3 -s -1 -J >"$LABTEST_LOG_DIR/stream-server.json" 2>&1 &
    local server=$!
    sleep 0.5
    local bytes
    bytes=$(in_ns "$SENDER_NS" timeout 30 iperf3 -c 10.2.0.2 -t 3 -J 2>/dev/null \
        | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bytes"]))' 2>/dev/null || echo 0)
    wait "$server" 2>/dev/null || true
    # 65,536 full-size segments carry 65,536 * 1448 bytes.
    if [ "$bytes" -gt $((65536 * 1448)) ]; then
        pass "stream: $((bytes / 1000000)) MB arrived (more than 65,536 frames)"
    else
        fail "stream: only $bytes bytes arrived"
    fi
    labtest_cleanup
}

# The management NIC (eth2, third on the command line) configured by DHCP
# from dnsmasq in a management namespace; the firewall then answers ping on
# the leased address. DHCP replies come from a host with checksum offload,
# so this also covers completing partial checksums before smoltcp.
test_dhcp() {
    echo "lab: eth2 by DHCP (dnsmasq in $MGMT_NS)"
    lab_up 3
    as_root ip netns add "$MGMT_NS"
    as_root ip -n "$MGMT_NS" link set lo up
    CONSOLE=$LABTEST_LOG_DIR/dhcp.log
    qemu_args microvm tcg 3 ""
    timeout --signal=KILL 300 qemu-system-x86_64 "${QEMU_ARGS[@]}" -serial "file:$CONSOLE" 2>>"$CONSOLE.stderr" &
    QEMU_PID=$!
    lab_attach 60
    local tap=${TAP[2]} deadline=$((SECONDS + 60))
    while ip link show "$tap" 2>/dev/null | grep -q NO-CARRIER; do
        [ $SECONDS -lt $deadline ] || break
        sleep 0.01
    done
    as_root ip link set "$tap" netns "$MGMT_NS"
    as_root ip -n "$MGMT_NS" addr add 10.3.0.1/24 dev "$tap"
    as_root ip -n "$MGMT_NS" link set "$tap" up
    in_ns "$MGMT_NS" dnsmasq --keep-in-foreground --port=0 --bind-interfaces --interface="$tap" \
        --dhcp-range=10.3.0.50,10.3.0.59,255.255.255.0,10m --dhcp-leasefile="$LABTEST_LOG_DIR/dhcp.leases" \
        --pid-file="$LABTEST_LOG_DIR/dnsmasq.pid" --log-facility="$LABTEST_LOG_DIR/dnsmasq.log" --log-dhcp &
    expect_console 'eth2: DHCP address 10\.3\.0\.5[0-9]' "dhcp: eth2 leased an address"
    local leased
    leased=$(grep -oE 'eth2: DHCP address 10\.3\.0\.5[0-9]' "$CONSOLE" | head -1 | grep -oE '10\.3\.0\.5[0-9]' || true)
    if [ -n "$leased" ]; then
        expect_ping "$MGMT_NS" "$leased" "dhcp: the firewall answers on $leased"
    fi
    expect_ping "$SENDER_NS" 10.1.0.1 "dhcp: eth0 still answers"
    labtest_cleanup
}

# Malformed frames from the sender (random bytes, truncated and corrupted
# IPv4, ARP, bad lengths, odd EtherTypes): the kernel keeps answering and
# forwarding, and nothing panics. The host fuzz targets cover the packet
# path; this covers the kernel around it (driver, buffers, smoltcp).
test_garbage_frames() {
    echo "lab: 20,000 malformed frames from the sender"
    boot_lab garbage microvm tcg "unifw.stats=1"
    expect_ping "$SENDER_NS" 10.1.0.1 "garbage: firewall up"
    local sent
    sent=$(in_ns "$SENDER_NS" timeout 120 python3 "$UNIFW_ROOT/scripts/lib/garbage.py" "${TAP[0]}" 52:54:00:00:01:00 20000 || echo 0)
    if [ "$sent" -gt 10000 ]; then pass "garbage: $sent frames sent"; else fail "garbage: only $sent frames sent"; fi
    expect_ping "$SENDER_NS" 10.1.0.1 "garbage: the firewall still answers"
    expect_ping "$SENDER_NS" 10.2.0.2 "garbage: and still forwards"
    expect_console "eth0: dropped [0-9]+ " "garbage: the drops are counted by reason"
    expect_no_console "PANIC" "garbage: no panic"
    labtest_cleanup
}
