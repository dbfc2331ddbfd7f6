# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (ROOT, DATA) are in the guest
# The one boot per distribution of tests/vm_quickstart.rs: the README's install block and
# quickstart blocks, as written, on an instance with a data disk (and, with the argument
# `mariadb`, MariaDB running on it), against the fake Lightsail inside the guest; then
# `lightsnap setup` again, then the snapshot unit started as its timer starts it.
#
# The host wrote /opt/lab/readme.sh (the README's blocks in order, each verbatim),
# /opt/lab/setup.sh and /opt/lab/status.sh (the setup block and the status block alone, to run
# again), and put the .deb in /root, the directory the install block runs in. What the guest
# saw goes to /out/q; the test decides what passes.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu
db=${1:-none}
out=/out/q
mkdir -p "$out"
. /etc/os-release
echo "$VERSION_CODENAME" >"$out/codename"

# The fake's snapshot images, and the restored disks' copies, in memory: the fake copies the
# whole disk inside CreateDiskSnapshot, so inside the frozen window (Lightsail does not), and
# onto the 9p share that takes seconds under TCG (8 s for 64 MB on Debian 13's kernel: past
# freeze_timeout). The attach command below puts a restored disk's copy on the share.
mount -t tmpfs -o size=512M,mode=0700 lab-snaps "$SNAPS"

# --- the instance, before the user's path: a data disk mounted from fstab, a database ------
data=$(disk_by_serial "$DATA")
mkfs.ext4 -q -L data "$data"
uuid=$(blkid -s UUID -o value "$data")
echo "UUID=$uuid /data ext4 defaults,nofail 0 2" >>/etc/fstab
mkdir -p /data
# Mounted the way boot mounts it, through its unit, once udev knows the new filesystem: a
# plain `mount /data` before udev has made /dev/disk/by-uuid/$uuid is unmounted again by
# systemd moments later (the fstab unit binds to a device unit not yet active; seen on
# Debian 11), and MariaDB's data then lands on the root filesystem.
udevadm trigger --action=change --settle "$data"
systemctl daemon-reload
systemctl start data.mount
if ! mountpoint -q /data || [ "$(findmnt -n -o UUID /data)" != "$uuid" ]; then
  log "the data disk is not mounted at /data"
  exit 1
fi
if [ "$db" = mariadb ]; then
  # MariaDB with its data on the data disk: `datadir` in a configuration file of its own,
  # the data directory made there by mariadb-install-db (as the package makes
  # /var/lib/mysql). Small, to fit a small disk: an 8 MB redo log, and the undo logs in the
  # system tablespace (10.5's and 10.11's default; 11.8 would make three 10 MB files). The
  # fake copies the whole disk inside CreateDiskSnapshot, so inside the frozen window
  # (Lightsail does not), and to the share again on AttachDisk: under TCG a larger disk's
  # copy outlasts freeze_timeout (10 s) or the SDK's timeout.
  systemctl unmask mariadb.service >/dev/null 2>&1
  printf '[mysqld]\ndatadir = /data/mysql\ninnodb_log_file_size = 8M\ninnodb_undo_tablespaces = 0\n' \
    >/etc/mysql/mariadb.conf.d/60-data-disk.cnf
  mariadb-install-db --user=mysql --datadir=/data/mysql --skip-test-db >"$out/install-db" 2>&1 ||
    { cat "$out/install-db" >&2; exit 1; }
  systemctl start mariadb.service
  mariadb -e "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64)) ENGINE=InnoDB; INSERT INTO shop.orders (note) VALUES ('first'), ('second'), ('third');"
  mariadb --batch --skip-column-names -e 'SELECT VERSION(); SELECT @@datadir' >"$out/mariadb"
fi
if [ "$(findmnt -n -o UUID /data)" != "$uuid" ]; then
  log "the data disk is no longer mounted at /data"
  exit 1
fi

# --- the fake Lightsail: instance web-1 in us-east-1 (the README's example), its system disk
# the root disk and data-1 the data disk (both found by their NVMe serials), accepting only
# the README's example key. Its AttachDisk hot-plugs the restored copy (as verify.sh's): the
# copy is put on the share, where the host opens it, after the call has returned (the disk
# appears later, as after a real AttachDisk; lightsnap waits for it).
cat >/usr/local/sbin/lab-hotplug <<'EOF'
#!/bin/sh
echo "$*" >>/out/q/attach-calls
case $1 in
attach)
  mkdir -p /lab/hotplug
  (cp --sparse=always "$2" "/lab/hotplug/${2##*/}" &&
    echo "attach /lab/hotplug/${2##*/} $3" >"$LAB_EVENTS") </dev/null >/dev/null 2>&1 &
  ;;
detach) echo "detach $2" >"$LAB_EVENTS" ;;
*) echo "hotplug: attach or detach, not $1" >&2; exit 2 ;;
esac
EOF
chmod 755 /usr/local/sbin/lab-hotplug
{
  seed_head "$ROOT"
  seed_disk data-1 "$DATA" /dev/xvdf
} >/run/lab/seed.toml
start_fake /run/lab/seed.toml --attach-command /usr/local/sbin/lab-hotplug \
  --access-key AKIAIOSFODNN7EXAMPLE --secret-key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

# --- the test's only additions: where the fake is, and nothing else -----------------------
# For the commands the README runs with sudo, which resets the environment: a sudoers
# env_file. (Not /etc/environment: Debian's /etc/pam.d/sudo, 11 to 13, has no pam_env.)
printf 'AWS_ENDPOINT_URL_LIGHTSAIL=%s\nAWS_EC2_METADATA_SERVICE_ENDPOINT=%s\n' "$FAKE" "$FAKE" \
  >/etc/lab-endpoint.env
echo 'Defaults env_file=/etc/lab-endpoint.env' >/etc/sudoers.d/lab-endpoint
chmod 0440 /etc/sudoers.d/lab-endpoint
visudo -c >"$out/visudo" 2>&1
# For the units, which see neither: a drop-in, written before the package is installed.
mkdir -p /etc/systemd/system/lightsnap-snapshot.service.d
cat >/etc/systemd/system/lightsnap-snapshot.service.d/lab.conf <<EOF
[Service]
Environment=AWS_ENDPOINT_URL_LIGHTSAIL=$FAKE AWS_EC2_METADATA_SERVICE_ENDPOINT=$FAKE
EOF
grep -c pam_env /etc/pam.d/sudo >"$out/pam-env-in-sudo" 2>&1 || true

# The user's shell: root's login environment, none of lab.sh's (it exports keys and an
# endpoint for its own uses).
as_user() {
  (cd /root && env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@")
}

# The unit state and everything under /etc/lightsnap: a second setup must change none of it.
state() {
  find /etc/lightsnap /etc/systemd/system -path '*lightsnap*' \
    -printf '%p %y %m %U %s %T@ %l\n' | sort
  find /etc/lightsnap -type f -exec sha256sum {} + | sort
  local u
  for u in lightsnap-snapshot.timer lightsnap-snapshot.service lightsnap-recover.service; do
    echo "$u $(systemctl is-enabled "$u" 2>&1) $(systemctl is-active "$u" 2>&1)"
  done
  systemctl show -p ActiveEnterTimestampMonotonic -p NextElapseUSecRealtime lightsnap-snapshot.timer
}

# --- the README, as written ---------------------------------------------------------------
set +e
as_user bash /opt/lab/readme.sh >"$out/readme.out" 2>"$out/readme.err"
echo $? >"$out/readme.code"
admin /__admin/calls >"$out/calls-readme.json"
state >"$out/state-1"
as_user sudo -n env 2>&1 | sort >"$out/sudo-env"
systemctl show -p Environment lightsnap-snapshot.service >"$out/unit-environment"

# --- setup again: nothing to change ------------------------------------------------------
as_user bash /opt/lab/setup.sh >"$out/setup2.out" 2>"$out/setup2.err"
echo $? >"$out/setup2.code"
state >"$out/state-2"
admin /__admin/calls >"$out/calls-setup2.json"

# --- the timer's run: the snapshot unit started as the timer starts it --------------------
if [ "$db" = mariadb ]; then
  # The test's probe, sorting after 20-mysql: pre-freeze hooks run in name order (so after
  # the MariaDB hook took its lock, just before the freeze), post-thaw ones in reverse (so
  # just after the thaw, before the lock is released). Each time it tries to commit a row,
  # waiting at most 2 s for the lock: "blocked" both times is the lock held across the
  # frozen window. It never fails the run.
  cat >/etc/lightsnap/hooks.d/90-lab-probe <<'EOF'
#!/bin/bash
d=/out/q/probe
mkdir -p "$d"
if mariadb --connect-timeout=10 -e "SET SESSION lock_wait_timeout = 2; INSERT INTO shop.orders (note) VALUES ('probe $1')" 2>"$d/$1.err"; then
  echo committed >"$d/$1"
else
  echo blocked >"$d/$1"
fi
exit 0
EOF
  chmod 755 /etc/lightsnap/hooks.d/90-lab-probe
fi
systemctl start lightsnap-snapshot.service
echo $? >"$out/start.code"
systemctl show --value -p Result lightsnap-snapshot.service >"$out/result"
invocation=$(systemctl show --value -p InvocationID lightsnap-snapshot.service)
journalctl --sync
journalctl -q --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$invocation" >"$out/service-journal"
admin /__admin/calls >"$out/calls.json"
admin /__admin/snapshots >"$out/snapshots.json"
admin /__admin/disks >"$out/disks.json"
if [ "$db" = mariadb ]; then
  rm -f /etc/lightsnap/hooks.d/90-lab-probe
  # After the run: commits go through again, and every row is there.
  mariadb --batch --skip-column-names -e "INSERT INTO shop.orders (note) VALUES ('after'); SELECT note FROM shop.orders ORDER BY id" \
    >"$out/orders-after" 2>&1
fi

# --- how it went, as the README's last step says -----------------------------------------
as_user bash /opt/lab/status.sh >"$out/status.out" 2>"$out/status.err"
echo $? >"$out/status.code"
as_user sudo lightsnap status --output json >"$out/status.json" 2>"$out/status-json.err"
as_user sudo lightsnap config --output json >"$out/config.json" 2>"$out/config.err"
ls -la /var/lib/lightsnap >"$out/state-dir" 2>&1
set -e
journalctl --sync
journalctl -q --no-pager -o short-precise -u 'lightsnap*' >"$out/journal"
stop_fake
cp /run/lab/fake.err "$out/fake.err"
