#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests.

Core kinds go through kubernetes-validate in strict mode (unknown fields rejected).
Custom resources (CloudNativePG, mariadb-operator) are checked against the CRD's
openAPIV3Schema from ../shared/reference with unknown fields rejected too, as the API
server does with `fieldValidation=Strict`. Usage: kubernetes.py REFERENCE_DIR FILE...
"""
import copy
import glob
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """Rejects unknown properties wherever the schema lists properties."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas(reference):
    schemas = {}
    for path in glob.glob(os.path.join(reference, "*", "*.yaml")):
        with open(path) as f:
            crd = yaml.safe_load(f)
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def main():
    reference, files = sys.argv[1], sys.argv[2:]
    schemas = crd_schemas(reference)
    failed = 0
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            where = f"{path}: {key[1]} {doc.get('metadata', {}).get('name')}"
            try:
                if key in schemas:
                    jsonschema.validate(doc, schemas[key])
                elif "." in key[0].split("/")[0] and not key[0].startswith(("apps/", "networking.k8s.io/", "batch/", "policy/")):
                    raise ValueError(f"no CRD schema for {key}")
                else:
                    kubernetes_validate.validate(doc, "1.33", strict=True)
                print(f"valid {where}")
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError, ValueError) as e:
                failed += 1
                print(f"INVALID {where}: {getattr(e, 'message', e)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
