#!/usr/bin/env python3
"""Generates the two sides of bench/plan.

dbctl: a GitOps repo of N specs on the `local` target (PostgreSQL, MariaDB and Redis in
turn, parameters set on a third of them) and a state directory whose instance.json
files record what was applied (the spec before its last change), with no server
running: `dbctl plan` observes each (record, pid file) and diffs it.
Terraform: N `terraform_data` resources whose `input` holds the same attributes.

Usage: generate.py WORK N
"""
import hashlib
import json
import os
import sys

work, n = sys.argv[1], int(sys.argv[2])
repo, state, tf = (os.path.join(work, d) for d in ("repo", "state", "tf"))
for d in (os.path.join(repo, "etc/databases"), os.path.join(repo, "connections"), state, tf):
    os.makedirs(d, exist_ok=True)
REPO_ID = "bench-plan-repo"
with open(os.path.join(repo, "etc/dbctl.yml"), "w") as f:
    f.write(f"repo_id: {REPO_ID}\ndefault_target: local\ntargets:\n  local:\n    platform: local\n"
            f"secrets:\n  recipients: []\n")
TEMPLATES = {
    "postgresql": ["postgresql.conf.j2", "pg_hba.conf.j2", "bootstrap.sql.j2"],
    "mariadb": ["my.cnf.j2", "bootstrap.sql.j2"],
    "redis": ["redis.conf.j2", "users.acl.j2", "acl-load.j2"],
}
here = os.path.dirname(os.path.abspath(__file__))


def digests(engine):
    """The digests dbctl records: sha256 of each built-in template's text."""
    out = {}
    for name in TEMPLATES[engine]:
        rel = f"local/{engine}/{name}"
        with open(os.path.join(here, "../../templates", rel), "rb") as f:
            out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


engines = [("postgresql", "15", {"work_mem": "64MB"}), ("mariadb", "10.11", {"max_connections": "300"}),
           ("redis", "7.0", {"maxclients": "500"})]
resources = {}
for i in range(n):
    engine, version, params = engines[i % 3]
    name = f"db-{i:04d}"
    changed = i % 3 == 0
    spec_params = params if changed else {}
    with open(os.path.join(repo, f"etc/databases/{name}.yml"), "w") as f:
        f.write(f"name: {name}\nengine: {engine}\nversion: \"{version}\"\nsize_gb: 10\nplan: small\n"
                f"parameters: {json.dumps(spec_params)}\n")
    inst = os.path.join(state, name)
    os.makedirs(inst, exist_ok=True)
    applied = {"target": "local", "version": version, "size_gb": 10, "plan": "small",
               "allowed_cidrs": [], "parameters": {}, "artifact_digests": digests(engine)}
    with open(os.path.join(inst, "instance.json"), "w") as f:
        json.dump({"name": name, "engine": engine, "version": version, "port": 20000 + i,
                   "repo_id": REPO_ID, "repo": repo, "created_at": "2026-12-01T00:00:00Z",
                   "applied": applied}, f)
    resources[name.replace("-", "_")] = {"input": {"engine": engine, "version": version, "size_gb": 10,
                                                    "plan": "small", "parameters": spec_params}}
with open(os.path.join(tf, "main.tf.json"), "w") as f:
    json.dump({"resource": {"terraform_data": resources}}, f)
