"""The one model every face translates into: the lab file's schema and its validated, immutable specs."""
