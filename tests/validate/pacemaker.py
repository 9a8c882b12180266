#!/usr/bin/python3
"""Validates rendered pacemaker CIB fragments with the real tools.

For each fragment: an empty CIB (`cibadmin --empty`) with stonith off and two nodes
gets the fragment's resources and constraints; `crm_verify --xml-file` must accept it;
`crm_simulate -S` must start every resource on one node; after that node fails, every
resource must run on the other. Usage: pacemaker.py FRAGMENT...
"""
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def run(*args, env=None):
    return subprocess.run(args, capture_output=True, text=True, env=env)


def placement(output):
    """resource id -> node from crm_simulate's 'Revised Cluster Status'."""
    revised = output.split("Revised Cluster Status:", 1)[-1]
    found = {}
    for m in re.finditer(r"\* (\S+)\s+\([^)]*\):\s+(Started (\S+)|Stopped)", revised):
        found[m.group(1)] = m.group(3)
    return found


def check(fragment, work):
    cib = os.path.join(work, "cib.xml")
    with open(cib, "w") as f:
        f.write(run("cibadmin", "--empty").stdout)
    env = dict(os.environ, CIB_file=cib)
    run("crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "false", env=env)
    for i in (1, 2):
        r = run("cibadmin", "-C", "-o", "nodes", "-X", f'<node id="{i}" uname="node{i}"/>', env=env)
        if r.returncode:
            return f"cannot add node: {r.stderr}"
    tree = ET.parse(cib)
    conf = tree.getroot().find("configuration")
    try:
        frag = ET.parse(fragment).getroot()
    except ET.ParseError as e:
        return f"not XML: {e}"
    if frag.tag != "configuration":
        return f"root element is <{frag.tag}>, expected <configuration>"
    for section in ("resources", "constraints"):
        for child in frag.find(section) if frag.find(section) is not None else []:
            conf.find(section).append(child)
    tree.write(cib)
    r = run("crm_verify", "--xml-file", cib, "-V")
    if r.returncode:
        return f"crm_verify exit {r.returncode}: {r.stdout}{r.stderr}"
    after = os.path.join(work, "after.xml")
    r = run("crm_simulate", "-x", cib, "-S", "--node-up", "node1", "--node-up", "node2",
            "--quorum", "1", "-O", after)
    first = placement(r.stdout)
    nodes = set(first.values())
    if not first or None in nodes or len(nodes) != 1:
        return f"resources not all started on one node: {first}\n{r.stdout}"
    active = nodes.pop()
    r = run("crm_simulate", "-x", after, "-S", "--node-fail", active, "--quorum", "1")
    second = placement(r.stdout)
    moved = set(second.values())
    if set(second) != set(first) or None in moved or len(moved) != 1 or active in moved:
        return f"resources did not fail over together from {active}: {second}\n{r.stdout}"
    return None


def main():
    failed = 0
    for fragment in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as work:
            problem = check(fragment, work)
        if problem:
            failed += 1
            print(f"INVALID {fragment}: {problem}")
        else:
            print(f"valid {fragment}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
