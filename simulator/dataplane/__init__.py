"""The data plane: a listener (mitmproxy in reverse mode) and its addons, upstream, scheduling, health
checks and TLS session resumption. Reads immutable listener versions; never parses files."""
