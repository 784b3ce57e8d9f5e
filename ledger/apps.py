from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"

    def ready(self) -> None:
        # The finance reports' admin lives apart from ledger/admin.py.
        from ledger.reports import admin  # noqa: F401
