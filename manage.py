#!/usr/bin/env python
"""Django's command-line entry point for Gatehouse."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    if sys.argv[1:2] == ["serve"]:
        # Zero setup: the first `serve` creates and keeps a secret key before settings are read.
        from gateway_project.bootstrap import ensure_secret_key

        ensure_secret_key()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
