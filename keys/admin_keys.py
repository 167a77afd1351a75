"""Admin for virtual keys and teams."""
