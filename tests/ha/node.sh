#!/bin/bash
# One pacemaker/corosync node for the HA tests. Runs inside
# `ip netns exec NS unshare -m --propagation private`, so its mounts (private
# /etc/corosync, /var/lib/{corosync,pacemaker}, a tmpfs /run) and its network are
# its own: a separate "machine" on 10.203.0.0/24. Starts sshd, corosync and pacemakerd
# and waits; the harness stops it by killing every pid of the namespace.
# Usage: node.sh DIR   (DIR holds corosync.conf, sshd_config, host key, authorized_keys)
set -eu
dir=$1
mkdir -p "$dir/etc-corosync" "$dir/var-lib-corosync" "$dir/log" \
  "$dir/var-lib-pacemaker/cib" "$dir/var-lib-pacemaker/pengine" \
  "$dir/var-lib-pacemaker/blackbox" "$dir/var-lib-pacemaker/cores"
chown -R hacluster:haclient "$dir/var-lib-pacemaker"
cp "$dir/corosync.conf" "$dir/etc-corosync/corosync.conf"
mount --bind "$dir/etc-corosync" /etc/corosync
mount --bind "$dir/var-lib-corosync" /var/lib/corosync
mount --bind "$dir/var-lib-pacemaker" /var/lib/pacemaker
mount -t tmpfs tmpfs /run
mkdir -p /run/crm /run/resource-agents /run/lock /run/sshd /run/postgresql
chown hacluster:haclient /run/crm
chown postgres:postgres /run/postgresql
ip link set lo up
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/log/sshd.log"
corosync -f -c /etc/corosync/corosync.conf >"$dir/log/corosync.out" 2>&1 &
sleep 1
export PCMK_logfile="$dir/log/pacemaker.log"
pacemakerd >"$dir/log/pacemakerd.out" 2>&1 &
wait
