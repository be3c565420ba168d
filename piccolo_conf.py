"""Piccolo's engine, from the configured database URL (the embedded server's when unset)."""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

from src.db.engine import database_dsn

DB = PostgresEngine(config={"dsn": database_dsn()})
APP_REGISTRY = AppRegistry(apps=["src.db.piccolo_app"])
