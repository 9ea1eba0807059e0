"""lbsim: simulated HTTPS listeners of cloud load balancers with a real TLS data plane."""
