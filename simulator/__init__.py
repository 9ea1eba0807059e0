"""lbsim: simulated HTTPS listeners of cloud load balancers with a real TLS data plane."""

from simulator.policies.groups import pin_groups

# The OpenSSL inside the cryptography wheel would otherwise offer a post-quantum hybrid group for TLS 1.3
# (about 1.1 KB more each way) that the vendors' listeners do not: pin the groups before OpenSSL starts.
pin_groups()
