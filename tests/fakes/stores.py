"""The store as the bot holds it (AsyncStore: a real database, every call on the store's thread),
seen synchronously by a test's setup and assertions."""

from __future__ import annotations

from typing import Any

from bot.store import AsyncStore, Store


class SyncView:
    """`view.due(now)` is Store.due run on the AsyncStore's thread and waited for
    (AsyncStore.blocking): the same connection the code under test uses, so a `:memory:` database
    works too. For assertions and setup only, never inside the code under test."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(Store, name)
        return lambda *args, **kwargs: self.store.blocking(lambda db: method(db, *args, **kwargs))

    def close(self) -> None:
        self.store.close_blocking()
