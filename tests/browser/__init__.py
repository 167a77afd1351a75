"""Admin pages in a real browser. This file makes `tests/browser` a package of its own: the Playwright browser is
package-scoped, and without it pytest would keep the browser (and its running asyncio loop) alive for the rest of
the session, breaking later tests (see conftest.py)."""
