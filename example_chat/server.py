"""``pts demo``: prepare the database, then serve the demo chat with uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from example_chat import db
from example_chat.app import create_app
from example_chat.models import ChatModel, model_from_env
from pts.database import resolve_dsn
from pts.settings import Settings
from pts.store.migrations import migrate as migrate_pts


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the demo needs before it serves: a migrated database and its secret."""

    dsn: str
    secret: str


async def prepare_database(dsn: str) -> Prepared:
    """Apply pts's migrations, then the demo's own; load (or make) the CSRF secret."""
    await migrate_pts(dsn)
    await db.migrate(dsn)
    return Prepared(dsn=dsn, secret=await db.load_secret(dsn))


def run(
    *,
    host: str,
    port: int,
    settings: Settings,
    echo: Callable[[str], None] = print,
    log_level: str = "warning",
) -> None:
    """Serve the demo until interrupted.

    The database is the configured one, else the embedded Postgres (started
    if needed); the model is the one ``PTS_DEMO_MODEL`` names. Raises
    ConfigurationError (a bad model setting) or StoreUnavailable before
    anything is served.
    """
    from pts.http.shutdown import run as run_server

    model: ChatModel = model_from_env()
    prepared = asyncio.run(prepare_database(resolve_dsn(settings)))
    app = create_app(dsn=prepared.dsn, secret=prepared.secret, model=model)
    shown_host = f"[{host}]" if ":" in host else host
    echo(f"pts demo chat on http://{shown_host}:{port} (model: {model.name}; Ctrl+C stops it)")
    run_server(app, host=host, port=port, log_level=log_level)
