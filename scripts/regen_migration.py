"""Regenerate the initial migration from the table definitions in ``store/schema*.py``.

Used only while the first release has not shipped: after it, every schema change gets
its own Alembic revision instead. Run from the repository root:

    .venv/bin/python scripts/regen_migration.py
"""
import glob
import os
import tempfile

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

for f in glob.glob("src/warrantor/store/migrations/versions/*.py"): os.remove(f)
empty = os.path.join(tempfile.mkdtemp(), "empty.db")
eng = sa.create_engine(f"sqlite:///{empty}")
cfg = Config(); cfg.set_main_option("script_location", "src/warrantor/store/migrations")
with eng.connect() as conn:
    cfg.attributes["connection"] = conn
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
