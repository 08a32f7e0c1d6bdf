#!/bin/sh
# Refresh phoenix/schemas/schema-cloud-config-v1.json from Debian's cloud-init package.
#
# cloud-init's JSON schema is not on PyPI; Debian's cloud-init package ships it. This
# downloads the package apt would install (no installation, no root needed for
# `apt-get download`), unpacks it in a temporary folder, copies the schema, and updates
# the versions and checksum in phoenix/schemas/NOTICE. Then review the diff, set
# CLOUD_INIT_VERSION in phoenix/cloud_config_schema.py and the version named in README.md
# to the new upstream version (tests/unit/test_cloud_config_schema.py checks the first
# against NOTICE), and run the tests (`python -m pytest -q tests/unit`).
#
# Usage: scripts/refresh_cloud_config_schema.sh   (run `apt-get update` first for the newest)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/phoenix/schemas"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's _apt user writes the download here

cd "$work"
apt-get download cloud-init
deb=$(ls cloud-init_*.deb)
dpkg -x "$deb" x
schema=x/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json
if [ ! -f "$schema" ]; then
    echo "error: $deb has no $schema; the package layout changed" >&2
    exit 1
fi
grep -q '^License: GPL-3 or Apache-2.0' x/usr/share/doc/cloud-init/copyright || {
    echo "error: the licence of $deb is no longer 'GPL-3 or Apache-2.0': check" \
        "x/usr/share/doc/cloud-init/copyright before vendoring" >&2
    exit 1
}
version=$(dpkg-deb --field "$deb" Version)
upstream=${version%%-*}
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$schema"
cp "$schema" "$dest/schema-cloud-config-v1.json"
sum=$(sha256sum "$dest/schema-cloud-config-v1.json" | cut -d' ' -f1)
sed -i \
    -e "s|^Upstream version: cloud-init [^ ]*|Upstream version: cloud-init $upstream|" \
    -e "s|^Debian package version: .*|Debian package version: $version|" \
    -e "s|^SHA-256: .*|SHA-256: $sum|" \
    "$dest/NOTICE"
echo "schema-cloud-config-v1.json from cloud-init $version (sha256 $sum)"
grep -q "^CLOUD_INIT_VERSION = \"$upstream\"" "$root/phoenix/cloud_config_schema.py" ||
    echo "now set CLOUD_INIT_VERSION = \"$upstream\" in phoenix/cloud_config_schema.py and" \
        "the version named in README.md"
