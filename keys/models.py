"""Virtual keys and teams, and what their calls cost: one row per request, one per day and scope.

A key's plaintext exists only in the response that created it; the database keeps a keyed digest
(HMAC-SHA256 with the gateway's secret) to find it and a masked form to show it. The API calls the
allowed model groups `models` (LiteLLM's name); here they are `allowed_models`.
"""
from __future__ import annotations

from django.db import models

from keys.choices import KeyRole, RequestStatus, RollupSpan


class Team(models.Model):
    """A group of keys sharing models, a budget and limits; no key may exceed its team."""

    id = models.CharField(primary_key=True, max_length=64, help_text="Public team id (team_id).")
    team_alias = models.CharField(max_length=255, blank=True, default="", db_index=True)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model groups the team may use; empty = all.")
    max_budget = models.FloatField(null=True, blank=True, help_text="USD per budget period; empty = no budget.")
    budget_duration = models.CharField(max_length=16, blank=True, default="", help_text="30s, 30m, 24h, 30d, 1mo.")
    budget_reset_at = models.DateTimeField(null=True, blank=True)
    spend = models.FloatField(default=0.0, help_text="USD spent in the current budget period.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveBigIntegerField(null=True, blank=True)
    max_parallel_requests = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    blocked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return self.team_alias or self.id


class VirtualKey(models.Model):
    """An API key handed to a team or an application, with its own models, budget and limits."""

    id = models.CharField(primary_key=True, max_length=64, help_text="Stable public id; survives regeneration.")
    digest = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the plaintext key.")
    key_name = models.CharField(max_length=32, help_text="The key masked for display, e.g. sk-...a1b2.")
    previous_digest = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                       help_text="The digest before the last regeneration, valid until below.")
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    key_alias = models.CharField(max_length=255, null=True, blank=True, unique=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="keys")
    user_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    role = models.CharField(max_length=32, choices=KeyRole.choices, default=KeyRole.INTERNAL_USER)
    allowed_models = models.JSONField(default=list, blank=True,
                                      help_text="Model groups this key may use; empty = the team's, or all.")
    aliases = models.JSONField(default=dict, blank=True, help_text='Model names rewritten, e.g. {"gpt-4": "my-group"}.')
    max_budget = models.FloatField(null=True, blank=True, help_text="USD per budget period; empty = no budget.")
    budget_duration = models.CharField(max_length=16, blank=True, default="", help_text="30s, 30m, 24h, 30d, 1mo.")
    budget_reset_at = models.DateTimeField(null=True, blank=True)
    spend = models.FloatField(default=0.0, help_text="USD spent in the current budget period.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveBigIntegerField(null=True, blank=True)
    max_parallel_requests = models.PositiveIntegerField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    blocked = models.BooleanField(default=False)
    log_prompts = models.BooleanField(default=False, help_text="Write this key's prompts and answers into the "
                                                                "request log lines (off: never logged).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "virtual key"

    def __str__(self) -> str:
        return self.key_alias or self.key_name


class RequestLog(models.Model):
    """One proxied request, successful or not. Written in bulk off the hot path; never edited.

    Key, team and deployment are plain ids rather than foreign keys: logs outlive what they name,
    and bulk inserts need no lookups.
    """

    request_id = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(db_index=True)
    key_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    key_alias = models.CharField(max_length=255, blank=True, default="")
    team_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    user_id = models.CharField(max_length=255, blank=True, default="")
    operation = models.CharField(max_length=32)
    model_group = models.CharField(max_length=255, db_index=True)
    deployment_id = models.CharField(max_length=64, blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    provider_model = models.CharField(max_length=255, blank=True, default="")
    streamed = models.BooleanField(default=False)
    status = models.CharField(max_length=32, choices=RequestStatus.choices, default=RequestStatus.OK)
    status_code = models.PositiveSmallIntegerField(default=200)
    error_type = models.CharField(max_length=64, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(default=0.0, help_text="USD.")
    latency_ms = models.FloatField(default=0.0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    fallbacks = models.PositiveSmallIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["key_id", "created_at"]), models.Index(fields=["team_id", "created_at"])]

    def __str__(self) -> str:
        return self.request_id


class DailySpend(models.Model):
    """Requests, tokens and cost per day, key, team and model group: what dashboards and /spend read."""

    date = models.DateField()
    key_id = models.CharField(max_length=64, blank=True, default="")
    team_id = models.CharField(max_length=64, blank=True, default="")
    model_group = models.CharField(max_length=255)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-date", "key_id", "model_group"]
        constraints = [models.UniqueConstraint(fields=["date", "key_id", "team_id", "model_group"],
                                               name="daily_spend_one_row_per_scope")]
        indexes = [models.Index(fields=["key_id", "date"]), models.Index(fields=["team_id", "date"])]

    def __str__(self) -> str:
        return f"{self.date} {self.key_id or '-'} {self.model_group}"


class UsageRollup(models.Model):
    """Requests, tokens and cost per minute or hour, key, team and model group: the dashboard's time series.

    Written by the same flush as the request logs (an incrementing upsert, like `DailySpend`), so a
    chart over the last hour or day reads at most a few thousand rows, never the log table. Minute rows
    are kept for two days; hour rows stay, like the daily ones, when raw logs are pruned.
    """

    span = models.CharField(max_length=8, choices=RollupSpan.choices)
    start = models.DateTimeField(help_text="The minute or hour this row covers, from its first instant (UTC).")
    key_id = models.CharField(max_length=64, blank=True, default="")
    team_id = models.CharField(max_length=64, blank=True, default="")
    model_group = models.CharField(max_length=255)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-start", "key_id", "model_group"]
        constraints = [models.UniqueConstraint(fields=["span", "start", "key_id", "team_id", "model_group"],
                                               name="usage_rollup_one_row_per_scope")]

    def __str__(self) -> str:
        return f"{self.span} {self.start:%Y-%m-%d %H:%M} {self.key_id or '-'} {self.model_group}"


class DeploymentRollup(models.Model):
    """Requests, errors and latency per minute or hour and deployment: error rates and p50/p95 per deployment.

    Latency is kept as a histogram with fixed bounds (`keys.latency`), one count column per bucket,
    so rows sum in SQL and percentiles are read back from the sums.
    """

    span = models.CharField(max_length=8, choices=RollupSpan.choices)
    start = models.DateTimeField(help_text="The minute or hour this row covers, from its first instant (UTC).")
    deployment_id = models.CharField(max_length=64)
    model_group = models.CharField(max_length=255)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    latency_ms_total = models.FloatField(default=0.0, help_text="Sum of the requests' latencies (for the mean).")
    latency_le_5 = models.PositiveIntegerField(default=0)
    latency_le_10 = models.PositiveIntegerField(default=0)
    latency_le_25 = models.PositiveIntegerField(default=0)
    latency_le_50 = models.PositiveIntegerField(default=0)
    latency_le_100 = models.PositiveIntegerField(default=0)
    latency_le_250 = models.PositiveIntegerField(default=0)
    latency_le_500 = models.PositiveIntegerField(default=0)
    latency_le_1000 = models.PositiveIntegerField(default=0)
    latency_le_2500 = models.PositiveIntegerField(default=0)
    latency_le_5000 = models.PositiveIntegerField(default=0)
    latency_le_10000 = models.PositiveIntegerField(default=0)
    latency_le_30000 = models.PositiveIntegerField(default=0)
    latency_le_60000 = models.PositiveIntegerField(default=0)
    latency_le_inf = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-start", "deployment_id"]
        constraints = [models.UniqueConstraint(fields=["span", "start", "deployment_id", "model_group"],
                                               name="deployment_rollup_one_row_per_scope")]

    def __str__(self) -> str:
        return f"{self.span} {self.start:%Y-%m-%d %H:%M} {self.deployment_id}"
