#!/bin/bash
# N "hosts" for the fan-out benchmark: network namespaces <ID>1..<ID>N at
# 10.203.1.11.. on a bridge in namespace <ID>b (10.203.1.1, where the tools run), each
# with its own sshd. Same filesystem, separate networks (every host's servers can
# use the same ports). With PRIVATE, each host's sshd (and so everything run over SSH)
# sees its own DIR/host<i>/private at that path, like the state directory of a real VM.
# `uplink ADDR/PREFIX` gives this machine's own namespace an address on the hosts'
# bridge (a veth into it), so a tool run here reaches both the hosts and 127.0.0.1 —
# a restore from a store on loopback onto a host, say; it goes with the bridge.
#   hosts.sh up DIR ID N [PRIVATE] | hosts.sh uplink DIR ID N ADDR/PREFIX
#   | hosts.sh down DIR ID N
set -eu
cmd=$1 dir=$2 id=$3 n=$4 private=${5:-}
br=${id}b
if [ "$cmd" = uplink ]; then
  ip link add "${id}uv" type veth peer name "${id}up"
  ip link set "${id}up" netns "$br"
  ip -n "$br" link set "${id}up" master br0 up
  ip addr add "$5" dev "${id}uv"
  ip link set "${id}uv" up
  exit 0
fi
if [ "$cmd" = down ]; then
  for ns in $(seq -f "${id}%g" 1 "$n") "$br"; do
    if ip netns list | grep -qw "$ns"; then
      for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  exit 0
fi
mkdir -p "$dir" /run/sshd
[ -e "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
: > "$dir/known_hosts"
. "$(cd "$(dirname "$0")" && pwd)/../../tests/support/netns.sh"
netns_bridge "$br" 10.203.1.1/24
for i in $(seq 1 "$n"); do
  ns=${id}$i addr=10.203.1.$((10 + i))
  netns_host "$br" "$ns" "${id}$i" "$addr/24"
  host="$dir/host$i"
  mkdir -p "$host"
  [ -e "$host/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$host/host_key"
  cat > "$host/sshd_config" <<CONF
ListenAddress $addr
HostKey $host/host_key
PidFile $host/sshd.pid
AuthorizedKeysFile $dir/client_key.pub
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin prohibit-password
MaxStartups 100
MaxSessions 50
CONF
  if [ -n "$private" ]; then
    mkdir -p "$host/private" "$private"
    chmod 755 "$dir" "$host" "$host/private"
    ip netns exec "$ns" unshare -m --propagation private sh -c \
      'mount --bind "$1" "$2" && exec /usr/sbin/sshd -f "$3" -E "$4"' sh \
      "$host/private" "$private" "$host/sshd_config" "$host/sshd.log"
  else
    ip netns exec "$ns" /usr/sbin/sshd -f "$host/sshd_config" -E "$host/sshd.log"
  fi
  echo "$addr $(cut -d' ' -f1,2 "$host/host_key.pub")" >> "$dir/known_hosts"
done
