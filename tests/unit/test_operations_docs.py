"""docs/operations.md documents every setting and every alert rule (they drift otherwise)."""

from __future__ import annotations

import re
from pathlib import Path

from camtopo.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "operations.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [var for var, _, _ in Settings.variables() if f"`{var}`" not in DOC]
    assert not missing, f"add to docs/operations.md: {missing}"


def test_every_alert_has_a_section_its_runbook_link_points_to() -> None:
    rules = (REPO / "infra" / "prometheus" / "alerts.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    runbooks = re.findall(r'runbook: "docs/operations.md#(\w+)"', rules)
    assert alerts and [a.lower() for a in alerts] == runbooks
    headings = re.findall(r"^### (\w+)$", DOC, flags=re.M)
    assert set(alerts) <= set(headings), set(alerts) - set(headings)
