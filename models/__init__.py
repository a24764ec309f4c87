"""descstream models package."""
