"""Which pgBackRest repository a restore to a time reads: a plain decision over `pgbackrest info`'s
JSON (no Django, no pgBackRest run), so that tests can give it any state of the repositories.

A repository can serve a target when its own status is ok, it holds a physical backup that
finished before the target, and its archived WAL reaches past the end of that backup. Of those,
the one whose archived WAL goes furthest is used (the newest state there is); on a tie repo1, the
backup volume, which is closer than S3. So repo2 (S3) serves when the backup volume died with the
server (repo1 "missing stanza path", an empty or damaged repository), or when repo1 fell behind.
`--repo N` forces one. Whether the WAL reaches the target time itself is known only by replaying
it (restore.py replays to the end of the archive when it does not).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

REPO_NAMES = {1: "the backup volume", 2: "S3"}


class NoRepository(Exception):
    """No repository can serve the target (or not the one asked for); the message says why."""


@dataclass(frozen=True)
class Candidate:
    repo: int
    backup: dict  # the newest backup that finished before the target (see backups())
    newest_wal: str  # the newest WAL segment archived in this repository


@dataclass
class Choice:
    repo: int
    backup: dict
    newest_wal: str
    why: str
    states: list[str] = field(default_factory=list)  # one line per repository
    others: list[int] = field(default_factory=list)  # the other repositories that could serve it

    @property
    def lines(self) -> list[str]:
        chosen = f"repository: {repo_name(self.repo)}, because {self.why}"
        return [chosen, *(f"  {line}" for line in self.states)]


def repo_name(repo: int) -> str:
    return f"repo{repo} ({REPO_NAMES[repo]})" if repo in REPO_NAMES else f"repo{repo}"


def repo_keys(stanza: dict) -> list[int]:
    return sorted(repo["key"] for repo in stanza.get("repo", [])) or [1]


def repo_status(stanza: dict, repo: int) -> dict:
    """The repository's own status (pgBackRest before 2.33 had only the stanza's)."""
    for entry in stanza.get("repo", []):
        if entry["key"] == repo:
            return entry.get("status", {})
    return stanza.get("status", {})


def backups(stanza: dict) -> list[dict]:
    """Every backup, oldest first, with `started`/`stopped` as aware datetimes and its repository."""
    found = []
    for backup in stanza.get("backup", []):
        stamps = backup["timestamp"]
        found.append(
            {
                "label": backup["label"],
                "type": backup["type"],
                "started": datetime.fromtimestamp(stamps["start"], UTC),
                "stopped": datetime.fromtimestamp(stamps["stop"], UTC),
                "repo": backup.get("database", {}).get("repo-key", 1),
                "error": backup.get("error", False),
                "wal_stop": backup.get("archive", {}).get("stop") or "",
            }
        )
    return sorted(found, key=lambda backup: backup["stopped"])


def wal_position(name: str) -> str:
    """A WAL segment name without its timeline: its place in the WAL."""
    return name[8:]


def newest_wal(stanza: dict, repo: int | None = None) -> str | None:
    """The newest WAL segment archived (in one repository, or in any)."""
    names = [
        archive["max"]
        for archive in stanza.get("archive", [])
        if archive.get("max") and repo in (None, archive.get("database", {}).get("repo-key", 1))
    ]
    return max(names, key=wal_position) if names else None


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ")


def candidate(stanza: dict, repo: int, target: datetime | None) -> Candidate | str:
    """What the repository can restore to the target, or why it cannot."""
    status = repo_status(stanza, repo)
    if status.get("code", 0) != 0:
        return f"not usable: {status.get('message', 'unknown status')}".splitlines()[0]
    done = [backup for backup in backups(stanza) if backup["repo"] == repo and not backup["error"]]
    if not done:
        return "no physical backup: nothing to replay WAL onto"
    usable = [backup for backup in done if target is None or backup["stopped"] <= target]
    if not usable:
        oldest = _when(done[0]["stopped"])
        return f"no physical backup finished before {_when(target)} (the oldest finished at {oldest})"
    backup = usable[-1]
    wal = newest_wal(stanza, repo)
    if not wal:
        return "no WAL archived: it cannot bring a backup forward to a time"
    if wal_position(wal) < wal_position(backup["wal_stop"]):
        return f"its WAL ends at {wal}, before the end of backup {backup['label']} ({backup['wal_stop']})"
    return Candidate(repo, backup, wal)


def describe(found: Candidate | str) -> str:
    if isinstance(found, str):
        return found
    backup = found.backup
    return (
        f"backup {backup['label']} ({backup['type']}, finished {_when(backup['stopped'])}), "
        f"WAL archived up to segment {found.newest_wal}"
    )


def choose(stanza: dict, target: datetime | None, forced: int | None = None) -> Choice:
    """The repository to restore from, and why; NoRepository when none can serve the target."""
    keys = repo_keys(stanza)
    if forced is not None and forced not in keys:
        raise NoRepository(f"--repo {forced}: there is no repo{forced} (configured: {_names(keys)})")
    found = {repo: candidate(stanza, repo, target) for repo in keys}
    states = [f"{repo_name(repo)}: {describe(state)}" for repo, state in found.items()]
    able = [state for state in found.values() if isinstance(state, Candidate)]
    if forced is not None:
        chosen = found[forced]
        if isinstance(chosen, str):
            asked = f"{repo_name(forced)} (asked for with --repo {forced})"
            raise NoRepository(f"{asked} cannot serve it: {chosen}")
        why = f"it was asked for (--repo {forced})"
    elif not able:
        raise NoRepository("no pgBackRest repository can serve it: " + "; ".join(states))
    else:
        chosen = max(able, key=lambda state: (wal_position(state.newest_wal), -state.repo))
        why = _why(chosen, found)
    others = [state.repo for state in able if state.repo != chosen.repo]
    return Choice(chosen.repo, chosen.backup, chosen.newest_wal, why, states, others)


def _why(chosen: Candidate, found: dict[int, Candidate | str]) -> str:
    others = [(repo, state) for repo, state in found.items() if repo != chosen.repo]
    if not others:
        return "it is the only one"
    reasons = []
    for repo, state in others:
        if isinstance(state, str):
            reasons.append(f"{repo_name(repo)} cannot serve it ({state})")
        elif wal_position(state.newest_wal) < wal_position(chosen.newest_wal):
            reasons.append(f"{repo_name(repo)}'s archived WAL ends sooner ({state.newest_wal})")
        else:
            reasons.append(f"{repo_name(repo)} reaches as far, and the lower-numbered one is preferred")
    return "; ".join(reasons)


def _names(keys: list[int]) -> str:
    return ", ".join(f"repo{key}" for key in keys)
