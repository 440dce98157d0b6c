"""sw_starlette with a real FastAPI app on uvicorn (route templates on), called with sw6 by a traced caller;
checked against expected/starlette.json (the scenario of test_web.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.plugins.test_web import check_front

HERE = Path(__file__).parent


def test_fastapi_entry_spans_continue_the_caller() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    check_front([sys.executable, str(HERE / "apps" / "asgi_app.py")],
                {"SW_AGENT_NAME": "plugin-asgi", "SW_PLUGIN_STARLETTE_ROUTE_TEMPLATE": "true"}, "starlette.json", 4)
