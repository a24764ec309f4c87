"""descstream serving package."""
