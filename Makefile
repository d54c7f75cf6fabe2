# Common tasks. `make test` is the one command that runs the whole test suite.
# One Python everywhere: the image (python:3.13-slim-trixie), CI and the Docker-less runner.
# python3.13 on the PATH, else a pyenv 3.13; `make PYTHON=/path/to/python3.13` overrides.
PYTHON ?= $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),\
	$(if $(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo ok),$(p))))
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help venv test lint format migrate seed run dev-server

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found. Install it (Debian trixie: apt install python3.13-venv;" \
		"pyenv: pyenv install 3.13) or name it: make PYTHON=/path/to/python3.13 $(MAKECMDGOALS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed  ## create .venv with every dependency

test: venv  ## run the whole test suite (real PostgreSQL, Redis, nginx and an S3 endpoint)
	$(BIN)/pytest

lint: venv  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## fix what ruff can fix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: venv  ## apply migrations to DATABASE_URL
	$(BIN)/python manage.py migrate

seed: migrate  ## demo catalog
	$(BIN)/python manage.py seed_demo

dev-server: migrate  ## runserver on 127.0.0.1:8000 (PostgreSQL and Redis from .env or the defaults)
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# --- The stack (README "The stack") ---------------------------------------------------------
COMPOSE ?= docker compose
COMPOSE_PROD := $(COMPOSE) -f docker-compose.yml -f docker-compose.prod.yml

.PHONY: init up prod-up down docker-check pitr-restore

# Before anything else: without Docker (or without Compose v2), say so and point to `make run`.
docker-check:
	@command -v docker >/dev/null 2>&1 || { echo "Docker is not installed (no docker command on the PATH)." \
		"Install Docker Engine with the Compose v2 plugin, or run the same stack without Docker: make run"; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "docker is here, but not Compose v2 (docker compose)." \
		"Install the docker-compose-plugin package, or run the stack without Docker: make run"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "The Docker engine does not answer (is the daemon running, may you" \
		"use it?): docker info fails. Start it, or run the stack without Docker: make run"; exit 1; }

init:  ## create .env with fresh secrets (if missing) and the data directories
	python3 ops/init_stack.py

up: docker-check init  ## development stack in Docker (docker-compose.yml + override)
	$(COMPOSE) up --build

prod-up: docker-check init  ## production stack in Docker, detached (docker-compose.yml + prod)
	$(COMPOSE_PROD) up --build --detach

down: docker-check  ## stop the Docker stack; the data under DATA_PATH stays
	$(COMPOSE) down

# README "Point-in-time recovery in compose": stops the shop and the database, restores into a new
# directory inside the data volume, brings the images back, switches (keeping the previous data)
# and starts everything again. Production: COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml.
pitr-restore: docker-check  ## database (+ images) back to TO="2026-11-28 10:15:00+00" or TO=latest; DRY_RUN=1, YES=1, REPO=2 (S3)
	@test -n "$(TO)" || { echo 'Say when: make pitr-restore TO="2026-11-28 10:15:00+00" (with its UTC offset) or TO=latest'; exit 1; }
	python3 ops/pitr_restore.py --to "$(TO)" $(if $(REPO),--repo "$(REPO)") $(if $(DRY_RUN),--dry-run) $(if $(YES),--yes)

run: init venv  ## the same stack without Docker, under DATA_PATH (Ctrl-C stops it)
	$(BIN)/python -m ops.runner
