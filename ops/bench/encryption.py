#!/usr/bin/env python
"""Benchmark: what age encryption (shop/backups/crypto.py) costs in time and memory.

Writes a file of incompressible bytes, then runs each step in a child process of its own, so
the peak RSS printed is that step's (from wait4):
  baseline:  a plain copy of the file, 1 MiB at a time
  encrypt:   crypto.encrypt_stream of the file into a file (what BACKUP_ENCRYPT_LOCAL does)
  decrypt:   crypto.decrypt_stream back (what a restore of an encrypted set does)
  import:    the child doing nothing but the imports (the RSS floor)
Medians of --runs runs, the ratios against the copy measured in the same run, and a check
that the decrypted file equals the original.

    .venv/bin/python ops/bench/encryption.py                  # 500 MB, 3 runs
    .venv/bin/python ops/bench/encryption.py --mb 2000 --runs 1

The whole-backup cost of encryption is measured by ops/bench/backup.py with
BACKUP_AGE_RECIPIENTS set in its environment (see the README, "Encryption at rest").
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import shutil, sys
from pathlib import Path
from shop.backups import crypto
step, source, target, identity_file = sys.argv[1:5]
identities = crypto.load_identities(identity_file)
recipients = [identity.to_public() for identity in identities]
if step == "copy":
    with open(source, "rb") as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
elif step == "encrypt":
    with open(source, "rb") as src, open(target, "wb") as out:
        crypto.encrypt_stream(src, out, recipients)
elif step == "decrypt":
    with open(source, "rb") as src, open(target, "wb") as out:
        crypto.decrypt_stream(src, out, identities, source)
"""


def run_step(step: str, source: Path, target: Path, identity: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one step in a child process."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, step, str(source), str(target), str(identity)], cwd=ROOT
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the {step} step failed")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=500, help="size of the test file in MB (default 500)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from shop.backups.crypto import new_identity_file

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-encryption-") as work:
        work = Path(work)
        plain, copy, sealed, opened = (work / name for name in ("plain", "copy", "sealed.age", "opened"))
        with open(plain, "wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(1024 * 1024))
        identity = work / "identity.txt"
        new_identity_file(identity)
        steps = {"import": (plain, work / "none"), "copy": (plain, copy), "encrypt": (plain, sealed)}
        steps["decrypt"] = (sealed, opened)
        times, rss = {step: [] for step in steps}, {step: [] for step in steps}
        for _ in range(args.runs):
            for step, (source, target) in steps.items():
                seconds, megabytes = run_step(step, source, target, identity)
                times[step].append(seconds)
                rss[step].append(megabytes)
        if not filecmp.cmp(plain, opened, shallow=False):
            sys.exit("the decrypted file differs from the original")
        print(f"{args.mb} MB, medians of {args.runs} run(s); time includes starting Python (see import)")
        base = median(times["copy"])
        for step in steps:
            seconds, megabytes = median(times[step]), max(rss[step])
            print(f"  {step:<8} {seconds:6.2f} s  {seconds / base:5.2f}x copy  peak RSS {megabytes:6.1f} MB")
        print(
            f"  ciphertext is {sealed.stat().st_size - plain.stat().st_size} bytes longer than the plaintext"
        )


if __name__ == "__main__":
    main()
