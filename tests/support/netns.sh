# Network-namespace "hosts" on a bridge, shared by tests/ha/cluster.sh and
# bench/fanout/hosts.sh. Source it; every address is private to the namespaces.
#   netns_bridge NS ADDR/PREFIX          namespace NS with bridge br0 at ADDR
#   netns_host BRIDGE NS VETH ADDR/PREFIX  namespace NS whose eth0 (ADDR) is plugged
#                                          into BRIDGE's br0 through veth pair VETH{v,p}

netns_bridge() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip -n "$1" link add br0 type bridge
  ip -n "$1" addr add "$2" dev br0
  ip -n "$1" link set br0 up
}

netns_host() {
  local br=$1 ns=$2 veth=$3 addr=$4
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${veth}v" type veth peer name "${veth}p"
  ip link set "${veth}v" netns "$br"
  ip -n "$br" link set "${veth}v" master br0 up
  ip link set "${veth}p" netns "$ns"
  ip -n "$ns" link set "${veth}p" name eth0
  ip -n "$ns" addr add "$addr" dev eth0
  ip -n "$ns" link set eth0 up
}
