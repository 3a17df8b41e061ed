"""The spool's quick append (``durable=False``, the queued mode): one ``write()`` to a
file the process keeps open, and still the safe hand-over to replay."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pixel_wsgi.errors import SpoolFull
from pixel_wsgi.outage.spool import Spool


def read_all(spool: Spool) -> list[str]:
    """Take every file and read its records' ids (what a replay would apply)."""
    ids = []
    for path in spool.files():
        taken = spool.take(path)
        ids += [record.event_id for record in spool.records(taken)]
        spool.finish(taken)
    return ids


def test_quick_appends_are_read_back_and_a_taken_file_gets_no_more(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first = [spool.append("visit", durable=False, n=n) for n in range(3)]
    assert read_all(spool) == first
    # The file the process kept open was taken: the next append opens a new one.
    later = spool.append("visit", durable=False, n=3)
    assert read_all(spool) == [later]
    assert spool.files() == [] and spool.pending() == 0


def test_threads_appending_while_replay_takes_files_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    written: list[str] = []
    lock = threading.Lock()

    def write(worker: int) -> None:
        for n in range(300):
            event_id = spool.append("conversion", durable=False, worker=worker, n=n)
            with lock:
                written.append(event_id)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for writer in writers:
        writer.start()
    read: list[str] = []
    while any(writer.is_alive() for writer in writers):
        read += read_all(spool)
    for writer in writers:
        writer.join()
    read += read_all(spool)
    assert sorted(read) == sorted(written) and len(read) == 1200


def test_the_cap_holds_on_the_quick_path(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=2000)
    with pytest.raises(SpoolFull):
        for n in range(100):
            spool.append("visit", durable=False, n=n, padding="x" * 50)
    assert 1500 < spool.pending() <= 2000


def test_a_forked_child_appends_to_its_own_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    parent = spool.append("visit", durable=False, who="parent")
    pid = os.fork()
    if pid == 0:  # the child: its own file, never the parent's open one
        try:
            spool.append("visit", durable=False, who="child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    again = spool.append("visit", durable=False, who="parent")
    names = sorted(path.name for path in spool.files())
    assert names == sorted([f"{os.getpid()}.spool", f"{pid}.spool"])
    events = {path.name: [r.event for r in spool.records(path)] for path in spool.files()}
    assert [e["id"] for e in events[f"{os.getpid()}.spool"]] == [parent, again]
    assert [e["who"] for e in events[f"{pid}.spool"]] == ["child"]


def test_personal_data_is_sealed_on_the_quick_path_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    erasable = (1, "order-1")
    spool.append(
        "report",
        durable=False,
        erasable=erasable,
        report={"personal_data": {"email_address": "jo@shop.example"}},
    )
    # An object so named anywhere is sealed as well; a custom_data field so named (text)
    # is no personal data, and a value that merely reads like one is escaped text.
    spool.append(
        "report",
        durable=False,
        erasable=erasable,
        report={
            "custom_data": {"personal_data": "plan B"},
            "x": {"personal_data": {"p": "555-0100"}},
        },
    )
    spool.append(
        "report",
        durable=False,
        report={"personal_data": {}, "custom_data": {"note": '"personal_data":{"a":"b"}'}},
    )
    text = b"".join(path.read_bytes() for path in spool.files())
    assert b"jo@shop.example" not in text and b"555-0100" not in text
    assert text.count(b'"sealed"') == 2
    events = [spool.unsealed(record.event) for record in spool.records(spool.files()[0])]
    assert events[0]["report"]["personal_data"] == {"email_address": "jo@shop.example"}
    assert events[1]["report"]["custom_data"] == {"personal_data": "plan B"}
    assert events[1]["report"]["x"] == {"personal_data": {"p": "555-0100"}}
    assert events[2]["report"]["custom_data"]["note"] == '"personal_data":{"a":"b"}'
