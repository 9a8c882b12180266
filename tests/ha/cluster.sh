#!/bin/bash
# A two-node corosync/pacemaker cluster in network namespaces, for the HA tests.
#   cluster.sh up DIR ID    create namespaces <ID>b (bridge 10.203.0.1, where dbctl
#                           and clients run), <ID>1 and <ID>2 (nodes 10.203.0.11/.12),
#                           start both nodes, wait until both are online
#   cluster.sh down DIR ID  kill every process of the namespaces, delete them
# DIR gets node1/ and node2/ state, the SSH client key and known_hosts.
set -eu
cmd=$1 dir=$2 id=$3
here=$(cd "$(dirname "$0")" && pwd)
br=${id}b

down() {
  for ns in "${id}1" "${id}2" "$br"; do
    if ip netns list | grep -qw "$ns"; then
      for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
    fi
  done
  sleep 0.5
  for ns in "${id}1" "${id}2" "$br"; do ip netns del "$ns" 2>/dev/null || true; done
  for img in "$dir"/shared/*.img; do
    [ -e "$img" ] || continue
    for loop in $(losetup -j "$img" -O NAME --noheadings 2>/dev/null); do losetup -d "$loop" 2>/dev/null || true; done
  done
}

if [ "$cmd" = down ]; then down; exit 0; fi

mkdir -p "$dir/shared"
chmod 755 "$dir" "$dir/shared"
[ -e "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
: > "$dir/known_hosts"
. "$here/../support/netns.sh"
netns_bridge "$br" 10.203.0.1/24
nodes=""
for i in 1 2; do
  netns_host "$br" "${id}$i" "${id}$i" "10.203.0.1$i/24"
  node="$dir/node$i"
  mkdir -p "$node"
  [ -e "$node/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$node/host_key"
  cp "$dir/client_key.pub" "$node/authorized_keys"
  cat > "$node/sshd_config" <<CONF
ListenAddress 10.203.0.1$i
Port 22
HostKey $node/host_key
PidFile /run/sshd-dbctl.pid
AuthorizedKeysFile $node/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin prohibit-password
MaxStartups 50
MaxSessions 20
CONF
  echo "10.203.0.1$i $(cut -d' ' -f1,2 "$node/host_key.pub")" >> "$dir/known_hosts"
  nodes="$nodes
	node {
		ring0_addr: 10.203.0.1$i
		name: node$i
		nodeid: $i
	}"
done
for i in 1 2; do
  node="$dir/node$i"
  cat > "$node/corosync.conf" <<CONF
totem {
	version: 2
	cluster_name: dbctl-test
	transport: knet
	crypto_cipher: none
	crypto_hash: none
	token: 3000
}
logging {
	to_stderr: no
	to_logfile: yes
	logfile: $node/log/corosync.log
	to_syslog: no
	timestamp: on
}
quorum {
	provider: corosync_votequorum
	two_node: 1
}
nodelist {$nodes
}
CONF
  setsid ip netns exec "${id}$i" unshare -m --propagation private bash "$here/node.sh" "$node" \
    >"$node/node.out" 2>&1 < /dev/null &
done
deadline=$((SECONDS + 120))
until ip netns exec "${id}1" crm_mon -1 2>/dev/null | grep -q "Online: \[ node1 node2 \]"; do
  if [ $SECONDS -ge $deadline ]; then
    echo "cluster not online after 120 s" >&2
    ip netns exec "${id}1" crm_mon -1 >&2 || true
    tail -20 "$dir/node1/log/corosync.log" "$dir/node1/node.out" >&2 || true
    exit 1
  fi
  sleep 1
done
ip netns exec "${id}1" crm_attribute --type crm_config --name stonith-enabled --update false
ip netns exec "${id}1" crm_attribute --type crm_config --name no-quorum-policy --update ignore
echo "cluster $id online after ${SECONDS}s"
