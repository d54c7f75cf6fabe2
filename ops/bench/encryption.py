#!/usr/bin/env python
"""Benchmark: what age encryption (shop/backups/crypto.py) costs in time and memory.

Writes a file of incompressible bytes, then runs each step in a child process of its own, so
the peak RSS printed is that step's (from wait4):
  baseline:  a plain copy of the file, 1 MiB at a time
  encrypt:   crypto.encrypt_stream of the file into a file (what BACKUP_ENCRYPT_LOCAL does)
  decrypt:   crypto.decrypt_stream back (what a restore of an encrypted set does)
  import:    the child doing nothing but the imports (the RSS floor)
and with --s3, against a moto server (a process of its own, started here):
  s3-plain:     s3.upload_file of the file as it is (the multipart upload without encryption)
  s3-encrypt:   s3.upload_file encrypting on the fly into the parts
  s3-decrypt:   the encrypted object streamed from S3 through crypto.decrypt_stream into a file
Medians of --runs runs, the ratios against the copy measured in the same run, and a check
that the decrypted file equals the original.

    .venv/bin/python ops/bench/encryption.py                  # 500 MB, 3 runs
    .venv/bin/python ops/bench/encryption.py --mb 2000 --runs 1
    .venv/bin/python ops/bench/encryption.py --s3

The whole-backup cost of encryption is measured by ops/bench/backup.py with
BACKUP_AGE_RECIPIENTS set in its environment (see the README, "Encryption at rest").
"""

import argparse
import filecmp
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import contextlib, shutil, sys
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
elif step.startswith("s3-"):
    import django
    django.setup()
    from shop.backups import s3
    from shop.backups.progress import LoggingReporter
    client = s3.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=s3.settings.BACKUP_S3_BUCKET)
    if step == "s3-decrypt":
        key = s3.object_key("bench", "sealed")
        body = client.get_object(Bucket=s3.settings.BACKUP_S3_BUCKET, Key=key)["Body"]
        with open(target, "wb") as out:
            crypto.decrypt_stream(body, out, identities, "the object")
    else:
        sha256 = sys.argv[5]
        encrypt_to = recipients if step == "s3-encrypt" else None
        s3.upload_file(client, Path(source), "bench", sha256, LoggingReporter(), encrypt_to)
"""


def run_step(
    step: str, source: Path, target: Path, identity: Path, sha256: str, env: dict
) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one step in a child process."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, step, str(source), str(target), str(identity), sha256],
        cwd=ROOT,
        env=env,
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
    parser.add_argument("--s3", action="store_true", help="also upload and download through a moto server")
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
        env, moto = dict(os.environ), None
        if args.s3:
            moto, env = start_moto(env)
            # The object s3-decrypt reads is the file as s3-encrypt sends it, under a fixed name.
            os.symlink(plain, work / "sealed")
            steps.update({"s3-plain": (plain, None), "s3-encrypt": (work / "sealed", None)})
            steps["s3-decrypt"] = (None, work / "from-s3")
        sha256 = file_sha256(plain)
        times, rss = {step: [] for step in steps}, {step: [] for step in steps}
        for _ in range(args.runs):
            for step, (source, target) in steps.items():
                seconds, megabytes = run_step(step, source, target, identity, sha256, env)
                times[step].append(seconds)
                rss[step].append(megabytes)
        if moto:
            moto.terminate()
            moto.wait()
        for result in [opened] + ([work / "from-s3"] if args.s3 else []):
            if not filecmp.cmp(plain, result, shallow=False):
                sys.exit(f"the decrypted file {result.name} differs from the original")
        print(f"{args.mb} MB, medians of {args.runs} run(s); time includes starting Python (see import)")
        base = median(times["copy"])
        for step in steps:
            seconds, megabytes = median(times[step]), max(rss[step])
            print(f"  {step:<8} {seconds:6.2f} s  {seconds / base:5.2f}x copy  peak RSS {megabytes:6.1f} MB")
        print(
            f"  ciphertext is {sealed.stat().st_size - plain.stat().st_size} bytes longer than the plaintext"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def start_moto(env: dict):
    """A moto S3 server in a process of its own on a free loopback port, and the children's
    environment for it. Not a thread of ours: a child's peak RSS includes this process's at the
    time it was started (Linux keeps the high-water mark across fork and exec), and moto keeps
    every object in memory."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).with_name("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "DJANGO_DEBUG": env.get("DJANGO_DEBUG", "true"),  # settings only: no secret key needed
        "BACKUP_S3_BUCKET": "bench",
        "BACKUP_S3_PREFIX": "",
        "BACKUP_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "BACKUP_S3_REGION": "us-east-1",
        "BACKUP_S3_ACCESS_KEY_ID": "bench",
        "BACKUP_S3_SECRET_ACCESS_KEY": "bench",
    }
    return server, env


if __name__ == "__main__":
    main()
