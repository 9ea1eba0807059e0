"""Run Tencent's `tccli` unchanged against a lab's HTTPS endpoint.

`tccli` (through `tencentcloud-sdk-python-common`) passes `verify=certifi.where()` to `requests` on every call,
so `REQUESTS_CA_BUNDLE` and the system trust store are ignored: only certifi's bundle is trusted. This runs
tccli's own `main()` with certifi's bundle extended by the lab CA, for this process only:

    python -m simulator.faces.tencent.lab_tccli --ca <out>/vendor-api/ca.pem -- \\
        ssl DescribeCertificates --endpoint 127.0.0.1:PORT --secretId ... --secretKey ... --region ap-guangzhou

`--ca` defaults to `$LBSIM_CA`. Nothing else of tccli is touched; without `--ca` it is plain tccli.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile


def trust(ca_file: str) -> str:
    """Point certifi at a bundle of its own roots plus `ca_file`; returns the bundle's path."""
    import certifi

    with open(certifi.where(), "rb") as f:
        roots = f.read()
    with open(ca_file, "rb") as f:
        lab = f.read()
    fd, path = tempfile.mkstemp(prefix="lbsim-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(roots + b"\n" + lab)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    certifi.where = lambda: path  # the SDK reads certifi.where() when it opens a connection
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m simulator.faces.tencent.lab_tccli",
                                     description="tccli, trusting the lab CA")
    parser.add_argument("--ca", default=os.environ.get("LBSIM_CA"), help="the lab CA (default $LBSIM_CA)")
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if args.ca:
        trust(args.ca)
    from tccli.main import main as tccli_main

    sys.argv = ["tccli", *argv[split + 1:]]
    return tccli_main() or 0


if __name__ == "__main__":
    sys.exit(main())
