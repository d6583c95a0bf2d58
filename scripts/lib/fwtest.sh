# shellcheck shell=bash
# Forwarding tests of issue 4: unifw built from iptables-save rulesets
# (tests/lab/fw-*.ipt), booted in the lab, with TCP, UDP and ICMP probes
# from both namespaces (scripts/lib/probe.py); and a differential test
# against a Linux namespace firewall loaded with the same file.
# Sourced by scripts/test after lab.sh and labtest.sh; scripts/bench-forward
# uses the Linux firewall namespace too.

FW_PROBE=$UNIFW_ROOT/scripts/lib/probe.py
LINUXFW_NS=$LAB-linuxfw
FW_BG_PIDS=()
# Ports the echo servers listen on (see tests/lab/fw-basic.ipt).
FW_PORTS=(5001 5002 5003 5004 5005)

# fw_bg OUT NS CMD...: runs CMD in namespace NS in the background, output in
# OUT (never on our stdout: a pipe held open by a helper would hang callers).
fw_bg() {
    local out=$1 ns=$2; shift 2
    in_ns "$ns" "$@" >"$out" 2>&1 &
    FW_BG_PIDS+=($!)
}

# Stops the background helpers this file started (by pid, children first:
# in_ns may be sudo in front of the helper).
fw_stop_bg() {
    local pid
    for pid in "${FW_BG_PIDS[@]}"; do
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${FW_BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    FW_BG_PIDS=()
}

fwtest_cleanup() {
    fw_stop_bg
    linuxfw_down
    labtest_cleanup
}

# fw_build RULES: the kernel image with RULES compiled in.
fw_build() {
    note "kernel image ($1)"
    UNIFW_RULES=$1 build_kernel
}

# fw_boot NAME: boots the image in a fresh lab and waits until the firewall
# answers on both sides.
fw_boot() {
    boot_lab "$1" microvm "$(choose_accel)" ""
    wait_for_ping "$SENDER_NS" 10.1.0.1 "${BOOT_DEADLINE:-60}" &&
        wait_for_ping "$RECEIVER_NS" 10.2.0.1 10
}

# fw_serve: echo servers on FW_PORTS in both namespaces.
fw_serve() {
    fw_bg "$LABTEST_LOG_DIR/serve-sender.log" "$SENDER_NS" python3 "$FW_PROBE" serve "${FW_PORTS[@]}"
    fw_bg "$LABTEST_LOG_DIR/serve-receiver.log" "$RECEIVER_NS" python3 "$FW_PROBE" serve "${FW_PORTS[@]}"
    local deadline=$((SECONDS + 10))
    until grep -q serving "$LABTEST_LOG_DIR/serve-sender.log" 2>/dev/null &&
        grep -q serving "$LABTEST_LOG_DIR/serve-receiver.log" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { fail "echo servers did not start"; return 1; }
        sleep 0.1
    done
}

# expect_flow FROM_NS KIND DST PORT EXPECTED WHAT: one request/response
# (probe.py tcp|udp) gives EXPECTED: ok, refused or timeout.
expect_flow() {
    local ns=$1 kind=$2 dst=$3 port=$4 want=$5 what=$6 got
    got=$(in_ns "$ns" python3 "$FW_PROBE" "$kind" "$dst" "$port" -t "${FW_TIMEOUT:-2}" 2>&1 | tail -1)
    if [ "$got" = "$want" ]; then pass "$what ($got)"; else fail "$what: expected $want, got $got"; fi
}

# expect_ping_through NS DST WHAT: three echoes through the firewall answered.
expect_ping_through() {
    if in_ns "$1" ping -c3 -i0.2 -W2 -q "$2" >/dev/null 2>&1; then pass "$3"; else fail "$3"; fi
}

# expect_ttl_exceeded NS DST FW WHAT: a TTL=1 echo gets time-exceeded from FW.
expect_ttl_exceeded() {
    local out
    out=$(in_ns "$1" ping -c1 -t1 -W2 "$2" 2>&1 || true)
    if grep -q "From $3 .*Time to live exceeded" <<<"$out"; then pass "$4"; else fail "$4: $(tr '\n' ' ' <<<"$out")"; fi
}

# Issue 4, tests 1-3, 5 and 6 (tests/lab/fw-basic.ipt): allowed flows pass
# both ways, denied ones time out, reject gives RST or ICMP port-unreachable,
# TTL=1 gets time-exceeded, ping passes.
test_fw_basic() {
    echo "lab: forwarding with tests/lab/fw-basic.ipt (iptables-save)"
    fw_build tests/lab/fw-basic.ipt
    fw_boot fw-basic || { fail "fw-basic: firewall did not answer"; fwtest_cleanup; return; }
    fw_serve || { fwtest_cleanup; return; }
    local s=$SENDER_NS r=$RECEIVER_NS k
    for k in tcp udp; do
        expect_flow "$s" $k 10.2.0.2 5001 ok "fw-basic: $k 5001 sender->receiver accepted"
        expect_flow "$r" $k 10.1.0.2 5001 ok "fw-basic: $k 5001 receiver->sender accepted"
        expect_flow "$s" $k 10.2.0.2 5002 ok "fw-basic: $k 5002 sender->receiver accepted"
        expect_flow "$r" $k 10.1.0.2 5002 timeout "fw-basic: $k 5002 receiver->sender dropped by the policy"
        expect_flow "$s" $k 10.2.0.2 5004 timeout "fw-basic: $k 5004 sender->receiver dropped by a rule"
        expect_flow "$r" $k 10.1.0.2 5005 timeout "fw-basic: $k 5005 receiver->sender dropped by the policy"
    done
    expect_flow "$s" tcp 10.2.0.2 5003 refused "fw-basic: tcp 5003 rejected with tcp-reset (ECONNREFUSED)"
    expect_flow "$r" tcp 10.1.0.2 5003 refused "fw-basic: tcp 5003 rejected with tcp-reset the other way"
    expect_flow "$s" udp 10.2.0.2 5003 refused "fw-basic: udp 5003 rejected with icmp-port-unreachable (ECONNREFUSED)"
    expect_reject_packets
    expect_ping_through "$s" 10.2.0.2 "fw-basic: sender pings the receiver through the firewall"
    expect_ping_through "$r" 10.1.0.2 "fw-basic: receiver pings the sender through the firewall"
    expect_ttl_exceeded "$s" 10.2.0.2 10.1.0.1 "fw-basic: TTL=1 from the sender: time-exceeded from 10.1.0.1"
    expect_ttl_exceeded "$r" 10.1.0.2 10.2.0.1 "fw-basic: TTL=1 from the receiver: time-exceeded from 10.2.0.1"
    expect_no_console "PANIC|ERROR" "fw-basic: no errors on the console"
    fwtest_cleanup
}

# What the rejections look like on the wire (sniffed at the sender): the RST
# comes from the receiver's address and port, the ICMP error quotes the
# datagram.
expect_reject_packets() {
    local log=$LABTEST_LOG_DIR/fw-basic-sniff.log
    fw_bg "$log" "$SENDER_NS" python3 "$FW_PROBE" sniff
    sleep 0.5
    in_ns "$SENDER_NS" python3 "$FW_PROBE" tcp 10.2.0.2 5003 -t 2 >/dev/null
    in_ns "$SENDER_NS" python3 "$FW_PROBE" udp 10.2.0.2 5003 -t 2 >/dev/null
    sleep 0.3
    fw_stop_bg
    fw_serve
    # RST+ACK (flags 20) from 10.2.0.2:5003; ICMP 3/3 from 10.1.0.1 quoting udp to 10.2.0.2:5003.
    if grep -qE '^tcp 10\.2\.0\.2 5003 10\.1\.0\.2 [0-9]+ (4|20)$' "$log"; then
        pass "fw-basic: the RST comes from 10.2.0.2:5003"
    else
        fail "fw-basic: no RST from 10.2.0.2:5003 at the sender ($(tr '\n' ';' <"$log"))"
    fi
    if grep -qE '^icmperr 10\.1\.0\.1 3 3 udp 10\.1\.0\.2 [0-9]+ 10\.2\.0\.2 5003$' "$log"; then
        pass "fw-basic: ICMP port-unreachable from 10.1.0.1 quotes the datagram"
    else
        fail "fw-basic: no ICMP 3/3 from 10.1.0.1 at the sender ($(tr '\n' ';' <"$log"))"
    fi
}

# Issue 4, test 4 (tests/lab/fw-stateful.ipt): default drop, replies through
# ESTABLISHED,RELATED, new connections only from the sender's side.
test_fw_stateful() {
    echo "lab: stateful forwarding with tests/lab/fw-stateful.ipt"
    fw_build tests/lab/fw-stateful.ipt
    fw_boot fw-stateful || { fail "fw-stateful: firewall did not answer"; fwtest_cleanup; return; }
    fw_serve || { fwtest_cleanup; return; }
    local s=$SENDER_NS r=$RECEIVER_NS k
    for k in tcp udp; do
        expect_flow "$s" $k 10.2.0.2 5001 ok "fw-stateful: $k sender->receiver, the reply comes back"
        expect_flow "$r" $k 10.1.0.2 5001 timeout "fw-stateful: $k receiver->sender (unsolicited) dropped"
    done
    expect_ping_through "$s" 10.2.0.2 "fw-stateful: sender pings the receiver, replies come back"
    expect_no_ping "$r" 10.1.0.2 "fw-stateful: the receiver cannot ping the sender"
    expect_no_console "PANIC|ERROR" "fw-stateful: no errors on the console"
    fwtest_cleanup
}

# linuxfw_up RULES: the "container" baseline of CONVENTIONS.md in place of
# QEMU: the sender and receiver namespaces as in the lab (same addresses,
# same interface names), joined by veth pairs to namespace LINUXFW_NS, whose
# ends are renamed eth0 and eth1 so the rules' -i/-o mean the same. RULES is
# loaded with iptables-restore; LINUXFW_LOAD_S gets the seconds it took.
linuxfw_up() {
    local rules=$1 i ns t0
    lab_down
    linuxfw_down
    for ns in "$SENDER_NS" "$RECEIVER_NS" "$LINUXFW_NS"; do
        as_root ip netns add "$ns"
        as_root ip -n "$ns" link set lo up
    done
    for i in 0 1; do
        ns=${NS_OF_TAP[$i]}
        as_root ip link add "${TAP[$i]}" netns "$ns" type veth peer name "eth$i" netns "$LINUXFW_NS"
        as_root ip -n "$LINUXFW_NS" addr add "${FIREWALL_ADDR[$i]}/24" dev "eth$i"
        as_root ip -n "$LINUXFW_NS" link set "eth$i" up
        as_root ip -n "$ns" addr add "${HOST_ADDR[$i]}" dev "${TAP[$i]}"
        as_root ip -n "$ns" link set "${TAP[$i]}" up
        as_root ip -n "$ns" route add default via "${FIREWALL_ADDR[$i]}"
    done
    # Forward, and no per-destination ICMP error limit (unifw has only a
    # global one, as Linux's icmp_msgs_per_sec): probes come in bursts.
    in_ns "$LINUXFW_NS" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0
    t0=$(date +%s.%N)
    in_ns "$LINUXFW_NS" iptables-restore <"$rules" || { fail "iptables-restore $rules"; return 1; }
    LINUXFW_LOAD_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    wait_for_ping "$SENDER_NS" 10.1.0.1 5 && wait_for_ping "$RECEIVER_NS" 10.2.0.1 5
}

linuxfw_down() {
    as_root ip netns del "$LINUXFW_NS" 2>/dev/null || true
}

# fw_extra_addrs: hosts .3-.9 on both sides besides .2, for probes.
fw_extra_addrs() {
    local h
    for h in 3 4 5 6 7 8 9; do
        as_root ip -n "$SENDER_NS" addr add "10.1.0.$h/24" dev "${TAP[0]}"
        as_root ip -n "$RECEIVER_NS" addr add "10.2.0.$h/24" dev "${TAP[1]}"
    done
}

# fw_probe_run PLAN OUT: sends PLAN's probes from both sides (each side
# sends those whose source is one of its addresses) while both sides sniff;
# writes "ID VERDICT" lines to OUT.
fw_probe_run() {
    local plan=$1 out=$2 tag
    tag=$(basename "$out" .verdicts)
    fw_extra_addrs
    fw_bg "$LABTEST_LOG_DIR/$tag-sniff-s.log" "$SENDER_NS" python3 "$FW_PROBE" sniff
    fw_bg "$LABTEST_LOG_DIR/$tag-sniff-r.log" "$RECEIVER_NS" python3 "$FW_PROBE" sniff
    # The addresses answer ARP at once; give the sniffers a moment to open.
    sleep 1
    in_ns "$SENDER_NS" python3 "$FW_PROBE" send "$plan" --rate 150 2>"$LABTEST_LOG_DIR/$tag-send-s.log" &
    local sp=$!
    in_ns "$RECEIVER_NS" python3 "$FW_PROBE" send "$plan" --rate 60 2>"$LABTEST_LOG_DIR/$tag-send-r.log"
    wait $sp || true
    fw_stop_bg
    python3 "$FW_PROBE" judge "$plan" "$LABTEST_LOG_DIR/$tag-sniff-s.log" "$LABTEST_LOG_DIR/$tag-sniff-r.log" >"$out"
}

# Issue 4, test 7: the same iptables-save file (tests/lab/fw-diff.ipt) in
# unifw and in a Linux namespace firewall; a few hundred probe flows (new
# TCP connections, UDP datagrams, ICMP echoes, both ways, hosts .2-.9 on
# each side) must get the same verdict from both: pass, drop, rst, or the
# same ICMP error type/code.
test_fw_differential() {
    local rules=tests/lab/fw-diff.ipt n=${FW_DIFF_PROBES:-300}
    local plan=$LABTEST_LOG_DIR/diff.plan a=$LABTEST_LOG_DIR/diff-unifw.verdicts b=$LABTEST_LOG_DIR/diff-linux.verdicts
    echo "lab: differential test, $rules in unifw and in Linux iptables, $n probes"
    python3 "$FW_PROBE" plan "$n" --seed "${FW_DIFF_SEED:-4}" >"$plan"
    fw_build "$rules"
    fw_boot fw-diff || { fail "fw-diff: firewall did not answer"; fwtest_cleanup; return; }
    fw_probe_run "$plan" "$a"
    expect_no_console "PANIC|ERROR" "fw-diff: no errors on the unifw console"
    labtest_cleanup
    CONSOLE=""
    linuxfw_up "$rules" || { fail "fw-diff: Linux namespace firewall did not come up"; fwtest_cleanup; return; }
    fw_probe_run "$plan" "$b"
    fwtest_cleanup
    fw_compare "$plan" "$a" "$b"
}

# fw_compare PLAN UNIFW LINUX: counts identical verdicts, lists the others.
fw_compare() {
    local plan=$1 a=$2 b=$3 total same summary
    total=$(wc -l <"$plan")
    same=$(paste -d' ' "$a" "$b" | awk '$1 == $3 && $2 == $4' | wc -l)
    summary=$(awk '{print $2}' "$b" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
    echo "  differential: $same of $total probes got the same verdict (Linux: ${summary%, })"
    if [ "$(wc -l <"$a")" = "$total" ] && [ "$same" = "$total" ]; then
        pass "fw-diff: unifw and Linux iptables agree on all $total probes"
    else
        fail "fw-diff: $((total - same)) of $total verdicts differ"
        paste -d' ' "$plan" "$a" "$b" | awk '$8 != $10 {print "    " $1, $2, $3 ":" $4, "->", $5 ":" $6, "unifw", $8, "linux", $10}' | head -30
    fi
}
