"""Fixtures of the managed-files tests (defined in `support`, shared with the API and e2e tests)."""
from tests.files_registry.support import file_storage, files_gateway  # noqa: F401
