"""Placeholder: the state stores land with their own change."""


class ProcessStateStore:  # pragma: no cover - replaced
    pass


class SQLiteStateStore(ProcessStateStore):  # pragma: no cover - replaced
    pass


class StoredProcessInfo:  # pragma: no cover - replaced
    pass


def open_store(path):  # pragma: no cover - replaced
    raise NotImplementedError
