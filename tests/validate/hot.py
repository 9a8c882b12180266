#!/usr/bin/python3
"""Validates Heat (HOT) templates offline with Debian's heat library (python3-heat):
the template structure, resource types, properties and intrinsic functions. Usage:
heat.py FILE...; exit 0 when all are valid."""
import sys, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
from oslo_config import cfg
cfg.CONF([], project="heat", default_config_files=[])
from heat.common import template_format, context
from heat.engine import template, environment, stack, resources
resources.initialise()
from heat.engine import resource as _resource
# No cloud to ask offline: every service counts as available; custom constraints
# (flavor, image, network exist?) need a cloud and are skipped by validate_res_tmpl_only.
_resource.Resource.is_service_available = classmethod(lambda cls, ctx: (True, None))
from heat.engine import constraints as _constraints
_constraints.CustomConstraint._is_valid = lambda self, value, schema, context: True
ok = True
for path in sys.argv[1:]:
    try:
        t = template.Template(template_format.parse(open(path).read()), env=environment.Environment({}))
        t.validate()
        ctx = context.RequestContext(user_id="u", project_id="p", is_admin=True)
        st = stack.Stack(ctx, "validate", t)
        st.validate(validate_res_tmpl_only=True)
        print("valid", path)
    except Exception as e:
        ok = False
        print("INVALID", path, type(e).__name__, e)
sys.exit(0 if ok else 1)
