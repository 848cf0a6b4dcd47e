"""The Django example's own suite (examples/django_site/servers/tests.py) passes.

It runs through Django's test runner, `python manage.py test`, in a child
process, as a Django project runs its tests; its processes carry this
session's marker, so the leak check covers them too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django", reason="the Django example needs django (the test extra has it)")

SITE = Path(__file__).resolve().parent.parent / "examples" / "django_site"


@pytest.mark.timeout(360)
def test_django_example_suite_passes():
    own_state = [SITE / ".procsync", SITE / "db.sqlite3"]  # the developer's: tests must not touch them
    existed = [path.exists() for path in own_state]
    proc = subprocess.run([sys.executable, "manage.py", "test", "--noinput", "-v", "2"], cwd=SITE,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    ran = re.search(r"^Ran (\d+) tests? in ", output, re.M)
    assert ran and int(ran.group(1)) > 0, output
    assert re.search(r"^OK\b", output, re.M), output
    assert [path.exists() for path in own_state] == existed, "the suite used the site's own state"
