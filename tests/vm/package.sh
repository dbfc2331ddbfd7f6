# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (DATA, ...) are in the guest
# Scenario 5 of tests/vm.rs, on one booted distribution: the .deb installed with apt, a
# [[snapshot]] in /etc/lightsnap/config.toml, the fake's endpoint through a drop-in, the
# snapshot unit started (a success, then an injected failure), the timer enabled, then the
# package removed and purged. /opt/lab/disks.env names ROOT and DATA; the .deb is in /opt/lab.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu
out=/out/pkg
mkdir -p "$out"
. /etc/os-release
echo "$PRETTY_NAME" >"$out/os"
ldd --version | sed -n 1p >"$out/glibc"
uname -r >"$out/kernel"

data=$(disk_by_serial "$DATA")
mkfs.ext4 -q "$data"
mkdir -p /data
mount "$data" /data
{
  seed_head "$ROOT"
  seed_disk data-1 "$DATA" /dev/xvdf
} >/run/lab/seed.toml
start_fake /run/lab/seed.toml

# Every path on the root filesystem but the package manager's databases, caches, logs and
# scratch space, and what the test itself put there.
listing() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/dpkg \
    -o -path /var/lib/apt -o -path /opt/lab -o -path /var/lib/lab -o -path /data \
    -o -path /root -o -path /out -o -path /lab \) -prune -o -print | sort
}
listing >"$out/before"

set +e
apt-get install -y "$(ls /opt/lab/lightsnap_*.deb)" >"$out/install.txt" 2>&1
code=$?
echo $code >"$out/install.code"
# Nothing more to see without the package: the test shows install.txt.
[ "$code" = 0 ] || exit 0
set -e
cat >>/etc/lightsnap/config.toml <<'EOF'

[[snapshot]]
path = "/data"
EOF
# Credentials as the README tells users to give them: `aws configure` run as root, which
# writes these two files, byte for byte, with these modes (the guest has no AWS CLI;
# tests/credentials.rs writes them with the real one). Nothing about them in the unit.
(
  umask 077
  mkdir -p /root/.aws
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    AKIDLIGHTSNAPTEST lightsnap-fake-secret >/root/.aws/credentials
  printf '[default]\nregion = %s\n' us-east-1 >/root/.aws/config
)
# The only addition to the unit: where the fake is (the API and the instance metadata).
mkdir -p /etc/systemd/system/lightsnap-snapshot.service.d
cat >/etc/systemd/system/lightsnap-snapshot.service.d/lab.conf <<EOF
[Service]
Environment=AWS_ENDPOINT_URL_LIGHTSAIL=$FAKE AWS_EC2_METADATA_SERVICE_ENDPOINT=$FAKE
EOF
systemctl daemon-reload
systemctl show -p Environment lightsnap-snapshot.service >"$out/unit-environment"

set +e
# A success: the unit runs lightsnap run, as the timer starts it, with root's ~/.aws only;
# the journal has no error from it. The unit made its state and run directories.
systemctl start lightsnap-snapshot.service
echo $? >"$out/start-ok.code"
ls -d /var/lib/lightsnap /run/lightsnap >"$out/unit-directories" 2>&1
journalctl -q --no-pager -u lightsnap-snapshot -p err >"$out/err-after-success"
admin /__admin/calls >"$out/calls-after-success.json"
# An injected failure (not retried by the SDK): the unit fails, the journal says why.
admin /__admin/faults '{"operation": "CreateDiskSnapshot", "kind": {"type": "error", "code": "InvalidInputException", "message": "lab-injected failure", "status": 400}, "count": 1}' >/dev/null
systemctl start lightsnap-snapshot.service
echo $? >"$out/start-fail.code"
journalctl -q --no-pager -u lightsnap-snapshot -p err >"$out/err-after-failure"
journalctl -q --no-pager -u lightsnap-snapshot >"$out/journal"
# The timer, once enabled.
systemctl enable --now lightsnap-snapshot.timer >"$out/enable.txt" 2>&1
systemctl list-timers --all --no-pager >"$out/timers"
# Removal, then purge.
apt-get remove -y lightsnap >"$out/remove.txt" 2>&1
echo $? >"$out/remove.code"
apt-get purge -y lightsnap >"$out/purge.txt" 2>&1
echo $? >"$out/purge.code"
rm -rf /etc/systemd/system/lightsnap-snapshot.service.d # the test's own drop-in
systemctl daemon-reload
dpkg-query -W -f='${db:Status-Abbrev}\n' lightsnap >"$out/dpkg-status" 2>&1
set -e
listing >"$out/after"
systemctl list-units --all --no-pager --plain 'lightsnap*' >"$out/units-after" 2>&1 || true
stop_fake
