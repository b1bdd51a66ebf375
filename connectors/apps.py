from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class ConnectorsConfig(AppConfig):
    name = "connectors"

    def ready(self) -> None:
        from connectors.checks import check_fakes_in_production, check_mock_mode, log_choices

        checks.register(check_mock_mode, "connectors")
        checks.register(check_fakes_in_production, "connectors", deploy=True)
        log_choices()
