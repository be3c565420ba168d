"""`python -m src worker`, counting the SQL statements it sends through asyncpg (the
patch of tests/instrumented.py). On SIGUSR1 it writes the count so far to the file
named by OKK_BENCH_SQL_COUNT. Benchmarks only: the count does not see SAQ's own
PostgreSQL queue, which talks psycopg, and the patch's imports add ~17 MB of RSS.

    OKK_BENCH_SQL_COUNT=var/bench/sql-count .venv/bin/python bench/_counted_worker.py
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import instrumented  # noqa: E402


def write_count(*_: object) -> None:
    """Written whole, then renamed: a reader never sees half a number."""
    path = Path(os.environ["OKK_BENCH_SQL_COUNT"])
    partial = path.with_suffix(".partial")
    partial.write_text(str(instrumented.STATEMENTS))
    partial.replace(path)


if __name__ == "__main__":
    instrumented.count_statements()
    signal.signal(signal.SIGUSR1, write_count)
    from src.__main__ import main

    sys.argv = ["okktopus", "worker"]
    main()
