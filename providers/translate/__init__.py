"""Format translation shared by adapters: pure functions from one wire shape to another."""
