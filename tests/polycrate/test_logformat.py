"""--log-format json: one JSON object per record, with the reconcile's key when there is one."""

from __future__ import annotations

import io
import json
import logging

import pytest

from polycrate.logformat import JsonFormatter, log_key, use_log_format


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logformat")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    use_log_format("json", logger)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_line_with_time_level_logger_and_the_rendered_message(captured) -> None:
    logger, stream = captured

    logger.warning("retrying %s in %.1fs:\nsecond line", "Organization/polycrate/acme-corp", 5)

    [line] = lines(stream)
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING" and line["logger"] == "tests.logformat"
    assert line["message"] == "retrying Organization/polycrate/acme-corp in 5.0s:\nsecond line"
    assert line["time"].endswith("+00:00")


def test_the_key_comes_from_the_running_reconcile_or_from_extra(captured) -> None:
    logger, stream = captured

    token = log_key.set("Organization/polycrate/acme-corp")
    try:
        logger.info("reconciled")
    finally:
        log_key.reset(token)
    logger.info("enqueued", extra={"key": "Contact/polycrate/john"})
    logger.info("no key")

    assert [line.get("key") for line in lines(stream)] == [
        "Organization/polycrate/acme-corp",
        "Contact/polycrate/john",
        None,
    ]


def test_a_traceback_stays_inside_the_one_line(captured) -> None:
    logger, stream = captured

    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")

    [line] = lines(stream)
    assert "ValueError: boom" in line["exception"]


def test_text_format_is_the_default_one_line_layout() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logformat.text")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    use_log_format("text", logger)

    logger.error("plain")

    assert stream.getvalue().endswith(" ERROR tests.logformat.text: plain\n")
    assert not isinstance(logger.handlers[0].formatter, JsonFormatter)
