"""The test harness: the scenario API, the pytest plugin, the TLS probe, compliance checks and `lbsim run`."""
