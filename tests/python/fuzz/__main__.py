"""Long fuzz runs: `python -m fuzz --minutes 60` (from tests/python; see docs/testing.md).

Without --uri it writes the demo mesh into a temporary directory and starts
`$MESHQL_BIN serve` (default: target/debug/meshql) on an ephemeral port. If the server dies, the
run records it, restarts the server and carries on (--stop-on-crash to stop instead). Prints a
summary and writes a JSON report (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from .runner import PENDING, Fuzzer, ServerDown

LISTENING = re.compile(r"^meshql listening on (grpc://\S+:\d+)$")


class Server:
    def __init__(self, binary: Path, config: Path, log: Path):
        self.binary, self.config, self.log = binary, config, log
        self.process: Optional[subprocess.Popen] = None
        self.uri = ""

    def start(self) -> str:
        err = open(self.log, "a")
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config), "--bind", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + 120
        assert self.process.stdout is not None
        for line in self.process.stdout:
            m = LISTENING.match(line.strip())
            if m:
                self.uri = m.group(1)
                return self.uri
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"meshql serve did not start; see {self.log}")

    def rss_mib(self) -> Optional[float]:
        try:
            with open(f"/proc/{self.process.pid}/statm") as f:
                return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
        except (OSError, ValueError, AttributeError):
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=10**9, help="statements at most")
    ap.add_argument("--seed", default=os.environ.get("MESHQL_FUZZ_SEED", str(int(time.time()))))
    ap.add_argument("--start", type=int, default=0, help="first statement index")
    ap.add_argument("--uri", help="fuzz a running server instead of starting one")
    ap.add_argument("--bin", default=os.environ.get("MESHQL_BIN", "target/debug/meshql"))
    ap.add_argument("--pending", default=os.environ.get("MESHQL_FUZZ_PENDING", ""),
                    help=f"comma-separated pending checks to enable: {', '.join(PENDING)}")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--stop-on-crash", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="log every query and its outcome")
    args = ap.parse_args(argv)
    pending = [p for p in args.pending.split(",") if p]

    server = None
    if args.uri:
        uri = args.uri
    else:
        work = Path(tempfile.mkdtemp(prefix="meshql-fuzz-"))
        binary = Path(args.bin).resolve()
        subprocess.run([str(binary), "demo", "--dir", str(work / "mesh")], check=True,
                       stdout=subprocess.DEVNULL)
        server = Server(binary, work / "mesh" / "meshql.toml", work / "server.log")
        uri = server.start()
        print(f"server {uri}, log {server.log}", flush=True)

    deadline = time.monotonic() + args.minutes * 60
    index, crashes = args.start, 0
    fuzzer = Fuzzer(uri, args.seed, is_alive=(server.alive if server else lambda: True),
                    pending=pending, log=lambda s: print(s, flush=True), verbose=args.verbose)
    report = fuzzer.report
    try:
        while index < args.start + args.count and time.monotonic() < deadline:
            chunk = min(500, args.start + args.count - index)
            try:
                fuzzer.run(chunk, deadline - time.monotonic(), start=index)
                index += chunk
            except ServerDown as e:
                crashes += 1
                index = report.violations[-1].index + 1
                print(f"server down: {e}", flush=True)
                if server is None or args.stop_on_crash:
                    break
                server.stop()
                uri = server.start()
                fuzzer.close()
                fuzzer = Fuzzer(uri, args.seed, is_alive=server.alive, pending=pending,
                                log=lambda s: print(s, flush=True), verbose=args.verbose)
                fuzzer.report = report
                for c in fuzzer.clients.values():
                    c.uri = uri
            rss = server.rss_mib() if server else None
            print(report.summary().splitlines()[0] + (f"; server RSS {rss} MiB" if rss else ""), flush=True)
    finally:
        fuzzer.close()
        if server:
            server.stop()
    print(report.summary())
    print(f"server crashes: {crashes}")
    if args.json:
        out = report.as_json()
        out["crashes"] = crashes
        out["pending"] = pending
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
