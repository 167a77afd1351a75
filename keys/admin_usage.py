"""Admin for request logs and daily spend: read-only, filterable."""
