"""Retention in the SQL store: ``prune`` and ``count_prunable`` (what ``pts prune`` runs).

Each batch is one statement, so one short transaction: it locks its candidates
with ``FOR UPDATE SKIP LOCKED`` and deletes them by the rules of
``pts.ds_delete_v1`` (soft-deleting a stream live forks still read).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from pts.store import validate as v
from pts.store.runner import QueryRunner


class RetentionSQL(QueryRunner):
    """``prune`` and ``count_prunable`` of :class:`~pts.store.base.Store`, in SQL."""

    async def prune(self, finished_before: datetime, limit: int = 1000) -> int:
        v.prune_args(finished_before, limit)
        row = await self._fetchrow("prune", finished_before, limit)
        assert row is not None
        return cast(int, row["pruned"])

    async def count_prunable(self, finished_before: datetime) -> int:
        v.prune_args(finished_before, 1)
        row = await self._fetchrow("count_prunable", finished_before)
        assert row is not None
        return cast(int, row["prunable"])
