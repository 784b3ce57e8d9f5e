#!/usr/bin/env python
"""Django's command-line utility for GreenGate."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")
    from django.core.management import execute_from_command_line

    from greengate_site.env import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"GreenGate configuration error: {exc}")


if __name__ == "__main__":
    main()
