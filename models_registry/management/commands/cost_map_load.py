"""`python manage.py cost_map_load FILE`: replace the bundled cost map with the operator's own.

The file is validated first (nothing is replaced by a broken map), stored as the operator's copy in
the state directory, and the registry version is bumped so every worker rebuilds its snapshot, and
with it the prices and model info it serves, within a second and without a restart.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from models_registry.choices import VersionScope
from models_registry.costs import (
    CostMapError,
    cost_map_validate,
    operator_cost_map_install,
    operator_cost_map_remove,
)
from models_registry.services import version_bump


class Command(BaseCommand):
    help = "Validate a cost map JSON file and make it the one every worker uses (or --reset to the bundled map)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="A JSON object keyed 'provider/model' (LiteLLM's format).")
        parser.add_argument("--reset", action="store_true", help="Drop the operator's copy: use the bundled map.")

    def handle(self, *args, **options) -> None:
        if options["reset"] == bool(options["file"]):
            raise CommandError("give either a FILE to load or --reset, not both and not neither")
        if options["reset"]:
            existed = operator_cost_map_remove()
            self._bump()
            note = "" if existed else " (no operator copy was loaded)"
            self.stdout.write(f"Using the bundled cost map{note}.")
            return
        path = Path(options["file"])
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
        except orjson.JSONDecodeError as error:
            raise CommandError(f"{path} is not valid JSON: {error}") from error
        try:
            cost_map_validate(data)
        except CostMapError as error:
            raise CommandError(f"{path}: {error}") from error
        stored = operator_cost_map_install(data)
        self._bump()
        self.stdout.write(f"Loaded {len(data)} cost map entries from {path} into {stored}; "
                          "workers pick them up within a second.")

    @staticmethod
    def _bump() -> None:
        with transaction.atomic():
            version_bump(scope=VersionScope.REGISTRY)
