"""CSV import throughput on SQLite and PostgreSQL, as ratios to a raw bulk load.

Generates N member rows (name, email, E.164 phone, 1-3 labels, 3 data fields, three
notification preferences), imports them through ``people.imports`` into a fresh database,
and in the same run loads the same rows raw -- members, their two identities and their
labels, as the import writes them -- with ``executemany`` into SQLite and ``COPY`` into
PostgreSQL. Prints rows/s and the ratio for each back end.

    .venv/bin/python benchmarks/import_members.py [--rows 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from people import imports
from people.roles import OWNER, RoleBook
from store.engine import create_engine, session_factory
from store.migrate import upgrade_sync

LABELS = ["vip", "gold", "new", "dental", "ortho", "family", "late", "referral"]
PLANS = ["basic", "gold", "platinum"]
COLUMNS = ["email", "phone", "name", "labels", "notify_sms", "notify_email", "notify_voice",
           "data.plan", "data.city", "data.seats"]  # fmt: skip


def generate(path: Path, rows: int) -> list[list[str]]:
    rng = random.Random(7)
    out = []
    for i in range(rows):
        out.append([
            f"member{i}@example{i % 97}.com", f"+1415{3000000 + i:07d}", f"Member {i}",
            ";".join(rng.sample(LABELS, rng.randint(1, 3))),
            rng.choice(["true", "false"]), "true", rng.choice(["yes", "no"]),
            rng.choice(PLANS), f"City {i % 500}", str(rng.randint(1, 50)),
        ])  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(out)
    return out


def _raw_values(rows: list[list[str]]) -> list[tuple[object, ...]]:
    return [
        ("contact", r[2], r[0], r[1], "contact",
         json.dumps({"plan": r[7], "city": r[8], "seats": r[9]}),
         r[4] == "true", r[5] == "true", r[6] == "yes", False)
        for r in rows
    ]  # fmt: skip


async def _import(url: str, path: Path) -> float:
    engine = create_engine(url)
    book = RoleBook({}, {})
    started = time.perf_counter()
    summary = await imports.run(
        path, session_factory(engine), imports.Importer(OWNER, book.get(OWNER), book), "US"
    )
    elapsed = time.perf_counter() - started
    await engine.dispose()
    if summary.created != summary.total or summary.failed:
        raise RuntimeError(f"the import did not take every row: {summary.errors[:3]}")
    return elapsed


def _identities(rows: list[list[str]]) -> list[tuple[int, str, str]]:
    """(member id, kind, address): a fresh table numbers the members 1..N in file order."""
    return [(i, kind, address) for i, r in enumerate(rows, 1)
            for kind, address in (("email", r[0]), ("phone", r[1]))]  # fmt: skip


def _labels(rows: list[list[str]]) -> list[tuple[int, str]]:
    return [(i, label) for i, r in enumerate(rows, 1) for label in r[3].split(";")]


def _sqlite_raw(db: Path, rows: list[list[str]]) -> float:
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    with connection:
        connection.executemany(
            "INSERT INTO members (kind, name, email, phone, role, data, notify_sms, notify_email,"
            " notify_voice, archived, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,CURRENT_TIMESTAMP)",
            _raw_values(rows),
        )
        connection.executemany(
            "INSERT INTO identities (member_id, kind, address, created_at)"
            " VALUES (?,?,?,CURRENT_TIMESTAMP)",
            _identities(rows),
        )
        connection.executemany(
            "INSERT INTO member_labels (member_id, label) VALUES (?,?)", _labels(rows)
        )
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


async def _postgres_raw(url: str, rows: list[list[str]]) -> float:
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    now = datetime.now(UTC)
    records = [(*v, now) for v in _raw_values(rows)]
    started = time.perf_counter()
    await connection.copy_records_to_table(
        "members",
        records=records,
        columns=["kind", "name", "email", "phone", "role", "data", "notify_sms", "notify_email",
                 "notify_voice", "archived", "created_at"],
    )  # fmt: skip
    await connection.copy_records_to_table(
        "identities", records=[(*i, now) for i in _identities(rows)],
        columns=["member_id", "kind", "address", "created_at"],
    )  # fmt: skip
    await connection.copy_records_to_table(
        "member_labels", records=_labels(rows), columns=["member_id", "label"]
    )
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def _fresh_postgres(admin_url: str, name: str) -> str:
    connection = await asyncpg.connect(admin_url)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    await asyncio.to_thread(upgrade_sync, url)
    return url


async def main(count: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        csv_path = here / "members.csv"
        rows = generate(csv_path, count)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"{count} rows, {size_mb:.1f} MB of CSV")

        raw_db, import_db = here / "raw.db", here / "import.db"
        for db in (raw_db, import_db):
            await asyncio.to_thread(upgrade_sync, f"sqlite+aiosqlite:///{db}")
        raw = _sqlite_raw(raw_db, rows)
        took = await _import(f"sqlite+aiosqlite:///{import_db}", csv_path)
        print(f"sqlite:     import {count / took:8.0f} rows/s   executemany {count / raw:8.0f} "
              f"rows/s   ratio {raw / took:.3f}   (target >= 20000 rows/s)")  # fmt: skip

        if postgres:
            raw_url = await _fresh_postgres(postgres, "fd_bench_raw")
            import_url = await _fresh_postgres(postgres, "fd_bench_import")
            raw = await _postgres_raw(raw_url, rows)
            took = await _import(import_url, csv_path)
            print(f"postgresql: import {count / took:8.0f} rows/s   COPY        {count / raw:8.0f} "
                  f"rows/s   ratio {raw / took:.3f}   (target >= 0.3)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", help="admin URL, e.g. postgresql://postgres@127.0.0.1/test")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.postgres))
