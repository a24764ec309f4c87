"""descstream streams package."""
