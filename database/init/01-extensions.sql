-- Runs once, when the database cluster is created (the postgres image's
-- /docker-entrypoint-initdb.d, or the Docker-less runner's first start), as the superuser
-- in POSTGRES_DB.

-- Typo-tolerant product search. The catalog migration creates it too; here it exists before
-- the first migration, which then needs no superuser rights for it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Which statements are slow or frequent (needs shared_preload_libraries in postgresql.conf).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
