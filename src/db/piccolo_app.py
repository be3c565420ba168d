import os

from piccolo.conf.apps import AppConfig

from src.db.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="okktopus",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "migrations"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
