"""Point-in-time recovery with pgBackRest: WAL archiving, physical backups, restore to a time.

config.py     the pgBackRest configuration and PostgreSQL's archive settings (no Django: the
              runner and the database image's tooling use it too)
pgbackrest.py running pgBackRest (as the postgres user when we are root) and reading its `info`
physical.py   full/diff/incr backups (the beat task `pitr_backup`, `manage.py pitr_backup`) and their status
repository.py which repository (repo1, the backup volume, or repo2, S3) a restore reads: a plain
              decision over `pgbackrest info`'s JSON
monitor.py    how far WAL archiving is behind, for the admin, /readyz, metrics and alerts
switch.py     the crash-safe switch of PostgreSQL data directories (no Django)
restore.py    restore to a time (`manage.py restore_backup --to`)
"""
