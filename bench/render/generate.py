#!/usr/bin/env python3
"""Writes a GitOps repo of N databases with mixed engines and targets for the render
benchmark. Usage: generate.py N DIR"""
import os
import sys

TARGETS = """default_target: os
targets:
  os:
    platform: openstack
    network: db-net
    subnet: db-subnet
    public_network: ext-net
    nodes: 2
  nomad:
    platform: nomad
    datacenters: [dc1]
  k8s:
    platform: kubernetes
    namespace: databases
    backup_destination: s3://backups/dbctl
  aws:
    platform: terraform
    provider: aws
    region: eu-west-1
  do:
    platform: terraform
    provider: digitalocean
"""
ENGINES = [("postgresql", "15"), ("mariadb", "10.11"), ("redis", "7.0"), ("mongodb", "7.0")]
TARGET_NAMES = ["os", "nomad", "k8s", "aws", "do"]
PLANS = ["xsmall", "small", "medium", "large"]


def main():
    count, root = int(sys.argv[1]), sys.argv[2]
    os.makedirs(os.path.join(root, "etc", "databases"), exist_ok=True)
    with open(os.path.join(root, "etc", "dbctl.yml"), "w") as f:
        f.write(TARGETS)
    for i in range(count):
        engine, version = ENGINES[i % len(ENGINES)]
        target = TARGET_NAMES[(i // len(ENGINES)) % len(TARGET_NAMES)]
        if target == "do" and engine == "mariadb":
            target = "aws"
        name = f"db-{i:04d}"
        with open(os.path.join(root, "etc", "databases", f"{name}.yml"), "w") as f:
            f.write(
                f"name: {name}\nengine: {engine}\nversion: \"{version}\"\nsize_gb: {10 + i % 90}\n"
                f"plan: {PLANS[i % len(PLANS)]}\ntarget: {target}\nallowed_cidrs: [\"10.{i % 250}.0.0/16\"]\n"
                f"parameters: {{max_connections: \"{100 + i % 50}\"}}\n"
            )


if __name__ == "__main__":
    main()
