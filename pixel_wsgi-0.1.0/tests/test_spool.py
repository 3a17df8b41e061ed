"""The outage spool's file format: durable appends, safe hand-over to replay, quarantine."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from pixel_wsgi.outage.spool import Spool, SpoolError


def test_appends_are_read_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ids = [spool.append("visit", n=n, text="tab\there ünï") for n in range(3)]
    [path] = spool.files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    taken = spool.take(path)
    records = list(spool.records(taken))
    assert [r.event_id for r in records] == ids
    assert [(r.event["kind"], r.event["n"], r.line) for r in records] == [
        ("visit", 0, 1),
        ("visit", 1, 2),
        ("visit", 2, 3),
    ]
    assert records[0].event["text"] == "tab\there ünï"
    assert spool.pending() > 0
    spool.finish(taken)
    assert spool.pending() == 0 and spool.files() == []


def test_a_torn_last_line_and_a_damaged_line_are_quarantined(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.append("a")
    spool.append("b")
    third = spool.append("c")
    [path] = spool.files()
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = lines[1].replace(b'"b"', b'"x"')  # checksum no longer matches
    path.write_bytes(lines[0] + damaged + lines[2] + lines[2][:17])  # + a torn write
    taken = spool.take(path)
    assert [r.event_id for r in spool.records(taken)] == [first, third]
    kept = spool.quarantined()
    assert [p.name.rsplit(".", 1)[1] for p in kept] == ["line2", "line4"]
    reason = b"# the checksum does not match (a torn or damaged line)\n"
    assert kept[0].read_bytes() == reason + damaged
    assert kept[1].read_bytes() == reason + lines[2][:17]
    assert {stat.S_IMODE(p.stat().st_mode) for p in kept} == {0o600}


def test_a_writer_never_appends_to_a_file_replay_has_taken(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    written: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            written.append(spool.append("e"))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for thread in threads:
        thread.start()
    seen: list[str] = []
    try:
        for _ in range(20):
            for path in spool.files():
                taken = spool.take(path)
                seen += [r.event_id for r in spool.records(taken)]
                spool.finish(taken)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    for path in spool.files():
        taken = spool.take(path)
        seen += [r.event_id for r in spool.records(taken)]
        spool.finish(taken)
    assert sorted(seen) == sorted(written) and len(set(seen)) == len(seen)
    assert spool.quarantined() == []


def test_a_spool_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.directory / f"{os.getpid()}.spool").mkdir()  # fails even for root
    with pytest.raises(SpoolError, match="cannot write"):
        spool.append("e")
