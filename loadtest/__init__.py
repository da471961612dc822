"""Load tests: Locust file for the HTTP families, async generators for HTTP (open loop) and live WebSockets."""
