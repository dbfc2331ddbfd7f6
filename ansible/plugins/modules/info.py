#!/usr/bin/python
# Copyright: the lightsnap developers
# Apache License 2.0 (see the collection's license)
"""Ansible module: lightsnap's status of the managed host, as facts."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: info
short_description: lightsnap's snapshot status of a host, as facts
version_added: "0.1.0"
description:
  - Runs C(lightsnap status) on the managed host and returns its JSON document as the fact
    C(lightsnap_status) - each target's last success and last attempt, its verification and
    the state directory.
  - Reads state files only (with O(refresh), also Lightsail's newest snapshot of each target,
    read-only). Changes nothing; check mode runs it all the same.
options:
  refresh:
    description: Also ask Lightsail for the newest snapshot of each target.
    type: bool
    default: false
  executable:
    description: The lightsnap binary.
    type: path
    default: lightsnap
author:
  - the lightsnap developers
"""

EXAMPLES = r"""
- name: Read lightsnap's status
  lightsnap.lightsnap.info:

- name: Fail on a target that never succeeded
  ansible.builtin.assert:
    that: item.last_success is not none
  loop: "{{ ansible_facts.lightsnap_status.targets }}"
"""

RETURN = r"""
ansible_facts:
  description: C(lightsnap_status), lightsnap's status document.
  returned: always
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            refresh=dict(type="bool", default=False),
            executable=dict(type="path", default="lightsnap"),
        ),
        supports_check_mode=True,
    )
    argv = [module.params["executable"], "--output", "json", "status"]
    if module.params["refresh"]:
        argv.append("--refresh")
    rc, out, err = module.run_command(argv)
    try:
        doc = json.loads(out) if out.strip() else {}
    except ValueError:
        module.fail_json(msg=f"lightsnap printed no JSON document: {out.strip()[:500]}", rc=rc, stderr=err)
    if rc != 0:
        message = (doc.get("error") or {}).get("message") or err.strip() or f"lightsnap exited {rc}"
        module.fail_json(msg=message, rc=rc, stderr=err)
    module.exit_json(changed=False, ansible_facts=dict(lightsnap_status=doc))


if __name__ == "__main__":
    main()
