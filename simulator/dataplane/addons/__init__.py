"""mitmproxy addons, one concern each: TLS termination, limits, timeouts, headers, balancing, stickiness,
the connection log and the vendors' error pages."""
