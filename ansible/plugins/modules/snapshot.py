#!/usr/bin/python
# Copyright: the lightsnap developers
# Apache License 2.0 (see the collection's license)
"""Ansible module: a consistent snapshot taken by lightsnap on the managed host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: snapshot
short_description: Take a consistent Lightsail snapshot with lightsnap
version_added: "0.1.0"
description:
  - Runs C(lightsnap freeze-and-snap) for the given paths (or C(lightsnap snap-instance) for the
    whole instance, or C(lightsnap run) for what the configuration names) on the managed host,
    and returns lightsnap's JSON document.
  - In check mode runs the same command with C(--dry-run) (as C(lightsnap plan)), which touches nothing and makes only read-only calls.
  - Fails when lightsnap fails, with its message and exit code, so a deploy stops before it
    changes anything.
options:
  paths:
    description:
      - Paths whose filesystems are snapshotted as one consistency group.
      - Empty with O(instance=false) runs C(lightsnap run) (the configured targets).
    type: list
    elements: path
    default: []
  instance:
    description: Snapshot the whole instance (C(snap-instance)) instead of disks.
    type: bool
    default: false
  tags:
    description: Tags added to the snapshots.
    type: dict
    default: {}
  wait:
    description: Wait until the snapshots are completed.
    type: bool
    default: false
  wait_timeout:
    description: How long O(wait) waits (a duration such as C(30m)).
    type: str
  trigger:
    description: What the snapshot is tagged as triggered by.
    type: str
    choices: [manual, timer, hook]
    default: hook
  executable:
    description: The lightsnap binary.
    type: path
    default: lightsnap
author:
  - the lightsnap developers
"""

EXAMPLES = r"""
- name: Snapshot /data before deploying
  lightsnap.lightsnap.snapshot:
    paths: [/data]
    tags:
      deploy: "{{ deploy_id }}"
    wait: true
"""

RETURN = r"""
lightsnap:
  description: lightsnap's JSON document (see the manual's JSON output page).
  returned: always
  type: dict
snapshots:
  description: The snapshots taken (empty in check mode).
  returned: always
  type: list
  elements: dict
rc:
  description: lightsnap's exit code.
  returned: always
  type: int
"""

import json

from ansible.module_utils.basic import AnsibleModule


def command(params, check_mode):
    exe = params["executable"]
    argv = [exe, "--output", "json"]
    if params["instance"]:
        argv.append("snap-instance")
    elif params["paths"]:
        argv += ["freeze-and-snap"] + params["paths"]
    else:
        argv.append("run")
    if check_mode:
        # What would be frozen and called, touching nothing (read-only calls only).
        return argv + ["--dry-run"]
    for key, value in sorted(params["tags"].items()):
        argv += ["--tag", f"{key}={value}"]
    argv += ["--trigger", params["trigger"]]
    if params["wait"]:
        argv.append("--wait")
        if params["wait_timeout"]:
            argv += ["--wait-timeout", params["wait_timeout"]]
    return argv


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", default=[]),
            instance=dict(type="bool", default=False),
            tags=dict(type="dict", default={}),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="str"),
            trigger=dict(type="str", choices=["manual", "timer", "hook"], default="hook"),
            executable=dict(type="path", default="lightsnap"),
        ),
        mutually_exclusive=[("paths", "instance")],
        supports_check_mode=True,
    )
    argv = command(module.params, module.check_mode)
    rc, out, err = module.run_command(argv)
    try:
        doc = json.loads(out) if out.strip() else {}
    except ValueError:
        module.fail_json(msg=f"lightsnap printed no JSON document: {out.strip()[:500]}", rc=rc, stderr=err)
    result = dict(
        changed=rc == 0 and not module.check_mode,
        lightsnap=doc,
        snapshots=doc.get("snapshots", []) if not module.check_mode else [],
        rc=rc,
        cmd=argv,
    )
    if rc != 0:
        message = (doc.get("error") or {}).get("message") or err.strip() or f"lightsnap exited {rc}"
        module.fail_json(msg=message, stderr=err, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
