"""Infrastructure: errors, settings, budgets, caches, limits, digests, the registry class, option schemas, plugins.

Imports nothing from the layers above it."""
