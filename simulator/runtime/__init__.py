"""The lab runtime: a `Lab` runs certificates, backends and listeners in one asyncio loop (and worker
processes), and the built-in default lab."""
