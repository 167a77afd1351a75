"""`python manage.py prune_request_logs [--days N] [--chunk-rows M]`: delete old raw request logs.

Request logs older than N days (default `GATEWAY_LOG_RETENTION_DAYS`; 0 keeps them forever) go in chunks
of M rows, each its own short transaction, and so do minute rollups older than
`GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS`. Daily spend and hour rollups are never touched. Safe to run from
cron on any machine, also while batch workers prune on their own (see keys/retention.py).
"""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from keys.retention import DEFAULT_CHUNK_ROWS, retention_apply


class Command(BaseCommand):
    help = "Delete request logs older than --days (and expired minute rollups); daily and hourly totals stay."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help="Delete request logs older than this many days (default: "
                                 "GATEWAY_LOG_RETENTION_DAYS; 0 keeps them).")
        parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                            help=f"Rows deleted per transaction (default {DEFAULT_CHUNK_ROWS}).")

    def handle(self, *args, **options) -> None:
        days = options["days"]
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        if options["chunk_rows"] < 1:
            raise CommandError("--chunk-rows must be at least 1")
        days = settings.GATEWAY_LOG_RETENTION_DAYS if days is None else days
        hours = settings.GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS
        result = retention_apply(log_days=days, rollup_hours=hours, chunk_rows=options["chunk_rows"])
        if days > 0:
            self.stdout.write(f"Deleted {result.request_logs} request logs older than {days} days.")
        else:
            self.stdout.write("Request logs are kept forever (GATEWAY_LOG_RETENTION_DAYS is 0): nothing to do. "
                              "Pass --days N to prune them now.")
        if hours > 0:
            self.stdout.write(f"Deleted {result.minute_rollups} minute rollups older than {hours} hours.")
