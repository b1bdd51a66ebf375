#!/usr/bin/env python
"""Django's command-line utility for Conductor."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from conductor.core import embedded

    # Every command runs against the services settings name: the embedded ones are started here
    # (or attached to), never by importing settings.
    embedded.start(
        settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL
    )

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
