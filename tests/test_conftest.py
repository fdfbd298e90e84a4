"""tests/conftest.py's skip_or_fail: a test group that cannot run skips, unless EDGEMNIST_REQUIRE_GROUPS names it.

Usage: pytest tests/test_conftest.py
"""
from __future__ import annotations

import pytest

from conftest import REQUIRE_GROUPS, required_groups, skip_or_fail


def test_a_group_skips_unless_required(monkeypatch):
    monkeypatch.delenv(REQUIRE_GROUPS, raising=False)
    assert required_groups() == frozenset()
    with pytest.raises(pytest.skip.Exception, match="browser: no chromium"):
        skip_or_fail("browser", "no chromium")

    monkeypatch.setenv(REQUIRE_GROUPS, " gpu, browser,")
    assert required_groups() == {"gpu", "browser"}
    with pytest.raises(pytest.fail.Exception, match=f"no chromium .*{REQUIRE_GROUPS}"):
        skip_or_fail("browser", "no chromium")
    with pytest.raises(pytest.skip.Exception, match="avr: no avr-gcc"):
        skip_or_fail("avr", "no avr-gcc")
