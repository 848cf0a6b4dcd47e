#!/usr/bin/env python
"""The Django project procsync.django_ext is tested in: ``python manage.py test``."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests/: helpers.py
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
