#!/bin/bash
# A live OpenStack control plane for the openstack platform's tests: Keystone, Heat and
# Swift (Debian's packages), Keystone and Heat on their own MariaDB, all under DIR,
# listening on ADDR.
#   cloud.sh up DIR ADDR      start MariaDB, Keystone (ADDR:5000), Heat (ADDR:8004) and
#                             Swift behind Keystone (ADDR:8080), register Heat and Swift
#                             in the catalog, write DIR/openrc.sh and DIR/pids; prints
#                             "ready" when Heat and Swift answer
#   cloud.sh down DIR         kill what DIR/pids lists
# Run it inside a network namespace to put ADDR there (`ip netns exec NS cloud.sh …`).
# Heat runs Heat-native resources only: tests map Nova/Neutron/Cinder types onto them
# with an environment's resource_registry.
set -eu
cmd=$1 dir=$2
py=/usr/bin/python3

if [ "$cmd" = down ]; then
  if [ -e "$dir/pids" ]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$dir/pids"
  fi
  exit 0
fi

addr=$3
mkdir -p "$dir"
: > "$dir/pids"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
ip link set lo up 2>/dev/null || true

# MariaDB, on a socket only.
db="$dir/mariadb"
mkdir -p "$db"
chown mysql:mysql "$db"
mariadb-install-db --no-defaults --user=mysql --datadir="$db/data" \
  --auth-root-authentication-method=normal --skip-test-db > "$dir/mariadb-install.log" 2>&1
mariadbd --no-defaults --user=mysql --datadir="$db/data" --skip-networking \
  --socket="$db/mysql.sock" --pid-file="$db/mysql.pid" --log-error="$db/error.log" &
echo $! >> "$dir/pids"
for _ in $(seq 1 100); do
  mariadb --no-defaults --socket="$db/mysql.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
  sleep 0.2
done
mariadb --no-defaults --socket="$db/mysql.sock" -uroot \
  -e 'CREATE DATABASE IF NOT EXISTS keystone; CREATE DATABASE IF NOT EXISTS heat;'
dburl() { echo "mysql+pymysql://root@localhost/$1?unix_socket=$db/mysql.sock"; }

# Keystone.
ks="$dir/keystone"
mkdir -p "$ks/fernet-keys" "$ks/credential-keys"
cat > "$ks/keystone.conf" <<CONF
[DEFAULT]
log_file = $ks/keystone.log
use_stderr = false
[database]
connection = $(dburl keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $ks/fernet-keys
[credential]
key_repository = $ks/credential-keys
CONF
export OS_KEYSTONE_CONFIG_FILES="$ks/keystone.conf"
keystone-manage --config-file "$ks/keystone.conf" db_sync
keystone-manage --config-file "$ks/keystone.conf" fernet_setup --keystone-user root --keystone-group root
keystone-manage --config-file "$ks/keystone.conf" credential_setup --keystone-user root --keystone-group root
keystone-manage --config-file "$ks/keystone.conf" bootstrap --bootstrap-password "$password" \
  --bootstrap-admin-url "http://$addr:5000/v3/" --bootstrap-public-url "http://$addr:5000/v3/" \
  --bootstrap-internal-url "http://$addr:5000/v3/" --bootstrap-region-id RegionOne
$py /usr/bin/keystone-wsgi-public --host "$addr" --port 5000 > "$ks/wsgi.log" 2>&1 &
echo $! >> "$dir/pids"
for _ in $(seq 1 150); do
  curl -sf "http://$addr:5000/v3/" >/dev/null && break
  sleep 0.2
done

cat > "$dir/openrc.sh" <<RC
export OS_AUTH_URL=http://$addr:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin
export OS_PASSWORD=$password
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
RC
chmod 600 "$dir/openrc.sh"
(
  . "$dir/openrc.sh"
  openstack service create --name heat orchestration -f value -c id
  for iface in public internal admin; do
    openstack endpoint create --region RegionOne orchestration "$iface" \
      "http://$addr:8004/v1/%(tenant_id)s" -f value -c id
  done
  openstack role create heat_stack_owner -f value -c id || true
) > "$dir/catalog.log" 2>&1

# Heat, API and engine in one process.
heat="$dir/heat"
mkdir -p "$heat"
cat > "$heat/heat.conf" <<CONF
[DEFAULT]
transport_url = fake://
num_engine_workers = 1
log_file = $heat/heat.log
use_stderr = false
[database]
connection = $(dburl heat)
[heat_all]
enabled_services = api,engine
[heat_api]
bind_host = $addr
bind_port = 8004
workers = 1
[keystone_authtoken]
www_authenticate_uri = http://$addr:5000/v3
auth_url = http://$addr:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = admin
username = admin
password = $password
[trustee]
auth_type = password
auth_url = http://$addr:5000/v3
username = admin
password = $password
user_domain_name = Default
[clients_keystone]
auth_uri = http://$addr:5000
[oslo_concurrency]
lock_path = $heat/lock
CONF
chmod 600 "$heat/heat.conf"
heat-manage --config-file "$heat/heat.conf" db_sync > "$heat/db_sync.log" 2>&1
$py /usr/bin/heat-all --config-file "$heat/heat.conf" > "$heat/stdout.log" 2>&1 &
echo $! >> "$dir/pids"
heat_up=
for _ in $(seq 1 300); do
  curl -s "http://$addr:8004/" >/dev/null && { heat_up=1; break; }
  sleep 0.2
done
[ -n "$heat_up" ] || { echo "Heat did not answer on $addr:8004; see $heat/heat.log" >&2; exit 1; }

# Swift behind Keystone (authtoken + keystoneauth) on ADDR:8080, in the catalog as
# object-store: for backup stores that authenticate with an openrc file. Its reaper
# watches the test binary (this script's parent); `down` stops it by PID too.
(
  . "$dir/openrc.sh"
  openstack service create --name swift object-store -f value -c id
  for iface in public internal admin; do
    openstack endpoint create --region RegionOne object-store "$iface" \
      "http://$addr:8080/v1/AUTH_%(project_id)s" -f value -c id
  done
) >> "$dir/catalog.log" 2>&1
PROXY_ADDR=$addr KEYSTONE_URL=http://$addr:5000/v3 KEYSTONE_PASSWORD=$password \
  "$(dirname "$0")/../swift/start" "$dir/swift" 8080 "$PPID" > "$dir/swift.log" 2>&1 \
  || { echo "Swift did not start; see $dir/swift.log" >&2; exit 1; }
cat "$dir"/swift/*.pid >> "$dir/pids"
echo ready
