"""The demo chat (``uv run pts demo``): pts's two delivery paths side by side.

A small Litestar + htmx chat whose answers are shown twice: as the driving
browser reads them from the HTTP response (token by token) and as every other
viewer gets them from Postgres LISTEN/NOTIFY (flush by flush). See
:mod:`example_chat.app` for the routes and the access rules.
"""

from __future__ import annotations

from example_chat.app import create_app
from example_chat.models import ChatModel, DemoModel, OpenAIModel, model_from_env

__all__ = ["ChatModel", "DemoModel", "OpenAIModel", "create_app", "model_from_env"]
