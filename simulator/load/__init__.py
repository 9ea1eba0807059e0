"""Load testing with Locust: `lbsim load` and the lean HTTPS client its profiles use."""
