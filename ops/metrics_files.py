"""Keep prometheus_client's multiprocess directory small while gunicorn recycles its workers.

Every worker writes its counters and histograms to files named after its pid. gunicorn replaces
a worker every ~1000 requests (max_requests), and the files of dead workers must stay so the
totals never go down: on a busy shop that is thousands of files a day, each read at every scrape
and 64 KB of /dev/shm. So when a worker exits, its values are added into one archive file per
kind (`counter_archive.db`, `histogram_archive.db`: names prometheus_client's collector reads
like any worker's) and its own files are deleted. Standard library and prometheus_client only:
gunicorn's master runs this, without Django.
"""

import os

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

ADDITIVE_KINDS = ("counter", "histogram")  # a sum over processes; gauges are per process


def retire_worker(directory: str, pid: int) -> None:
    """What gunicorn's child_exit does: the dead worker's gauges go, its counts move to the archive."""
    multiprocess.mark_process_dead(pid, directory)
    for kind in ADDITIVE_KINDS:
        dead = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(dead):
            continue
        values = list(MmapedDict.read_all_values_from_file(dead))
        archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
        try:
            for key, value, timestamp, _ in values:
                total, _ = archive.read_value(key)
                archive.write_value(key, total + value, timestamp)
        finally:
            archive.close()
        os.remove(dead)  # (a scrape in between may count this worker twice, once)
