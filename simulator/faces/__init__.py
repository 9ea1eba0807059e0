"""The control faces: each translates into the lab's one model and back (the management REST API now).
Whoever starts a lab attaches them; the lab does not know its faces."""
