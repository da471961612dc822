"""Ray Serve deployments: each wraps one model backend (speechcore.backends)."""
