# Sourced by the multi-host tests after common.sh: several "hosts" on this machine, each a
# network namespace (a veth on one bridge), with its own host name, a private /tmp and
# $work/priv bound to its own $work/priv-NAME; $work itself is shared, like a cluster's
# shared file system. Open MPI runs between them over TCP: mpirun on the first host, the
# others started through a launch agent (in place of ssh) that enters their namespace.
# Skips (exit 77) where namespaces cannot be made (not root, no CAP_NET_ADMIN, no ip or
# unshare). make_hosts N sets $hosts (names) and $hostfile; on_hosts runs mpirun.
# Everything is removed on exit.
hosts_prefix="eplb$$"
hosts=()
hosts_cleanup() {
  local ns pid
  for ns in "${hosts[@]/#/$hosts_prefix-}" "$hosts_prefix-sw"; do
    # Processes this test started in its namespaces (orted and ranks, if one hung).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
trap 'hosts_cleanup; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

skip() { echo "SKIP: $*"; exit 77; }

make_hosts() {  # make_hosts N: hosts h0..h(N-1), 10.201.0.(10+i)
  local n=$1 i ns
  [[ $(id -u) -eq 0 ]] || skip "not root: cannot make network namespaces"
  command -v ip >/dev/null && command -v unshare >/dev/null || skip "ip (iproute2) or unshare missing"
  ip netns add "$hosts_prefix-sw" 2>/dev/null || skip "cannot make a network namespace (no CAP_NET_ADMIN?)"
  ip -n "$hosts_prefix-sw" link add br0 type bridge && ip -n "$hosts_prefix-sw" link set br0 up ||
    skip "cannot make a bridge in a network namespace"
  hostfile="$work/hostfile"; : >"$hostfile"
  for ((i = 0; i < n; i++)); do
    ns="$hosts_prefix-h$i"
    hosts+=("h$i")
    ip netns add "$ns"
    ip link add "v$$a$i" type veth peer name "v$$b$i"
    ip link set "v$$a$i" netns "$ns"
    ip link set "v$$b$i" netns "$hosts_prefix-sw"
    ip -n "$hosts_prefix-sw" link set "v$$b$i" master br0 up
    ip -n "$ns" addr add "10.201.0.$((10 + i))/24" dev "v$$a$i"
    ip -n "$ns" link set "v$$a$i" up
    ip -n "$ns" link set lo up
    echo "h$i" >"$work/host-of-10.201.0.$((10 + i))"
    mkdir -p "$work/priv-h$i"
  done
  mkdir -p "$work/priv"
  # as_host NAME COMMAND...: COMMAND on host NAME.
  cat >"$work/as_host" <<SH
#!/bin/bash
name=\$1; shift
exec ip netns exec "$hosts_prefix-\$name" unshare --mount --uts bash -c '
  mount -t tmpfs tmpfs /tmp && mount --bind "\$0/priv-\$1" "\$0/priv" && hostname "\$1" &&
  shift && exec "\$@"' "$work" "\$name" "\$@"
SH
  # Open MPI's launch agent, called as ssh would be: HOST COMMAND-WORDS...
  cat >"$work/agent" <<SH
#!/bin/bash
host=\$1; shift
exec "$work/as_host" "\$(cat "$work/host-of-\$host")" bash -c "\$*"
SH
  chmod +x "$work/as_host" "$work/agent"
}

hosts_line() {  # hosts_line SLOTS...: the hostfile, one line per host with its slots
  local i=0 slots
  : >"$hostfile"
  for slots in "$@"; do echo "10.201.0.$((10 + i)) slots=$slots" >>"$hostfile"; i=$((i + 1)); done
}

# on_hosts NP MPIRUN-OPTIONS... -- COMMAND...: mpirun on h0 over the hostfile, TCP only.
on_hosts() {
  local np=$1; shift
  local opts=()
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  OMPI_MCA_btl=self,vader,tcp "$work/as_host" h0 mpirun -np "$np" --hostfile "$hostfile" \
    --mca plm_rsh_agent "$work/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl_tcp_if_include 10.201.0.0/24 --mca oob_tcp_if_include 10.201.0.0/24 \
    "${opts[@]}" "$@"
}
