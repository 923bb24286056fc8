"""Starts the runtime interface client with the module search path AWS's Python base images
give a function (their own /var/runtime/bootstrap.py does the same): the function's code
first, then its layers' /opt/python/lib/pythonX.Y/site-packages and /opt/python ("Layer paths
for each Lambda runtime", https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html),
each a site directory (its .pth files read), unless the function sets PYTHONPATH itself;
then PYTHONPATH is the runtime's directory for the processes the function starts. The pip
package awslambdaric leaves sys.path alone, so this base needs the step as AWS's does."""

import os
import site
import sys

from awslambdaric.__main__ import main  # found beside this file, in /var/runtime

TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
RUNTIME_DIR = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
OPT_PYTHON = "/opt/python"
PYTHON_VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
OPT_SITE_PACKAGES = f"/opt/python/lib/{PYTHON_VERSION}/site-packages"


def set_search_path() -> None:
    is_pythonpath_set = "PYTHONPATH" in os.environ
    if not is_pythonpath_set:
        sys.path[0:0] = [OPT_SITE_PACKAGES, OPT_PYTHON]
    sys.path.insert(0, TASK_ROOT)
    site.addsitedir(TASK_ROOT)  # the .pth files of packages installed with --target
    if not is_pythonpath_set:
        site.addsitedir(OPT_SITE_PACKAGES)
        site.addsitedir(OPT_PYTHON)
        os.environ["PYTHONPATH"] = RUNTIME_DIR


if __name__ == "__main__":
    set_search_path()
    main([sys.argv[0], os.environ["_HANDLER"]])
