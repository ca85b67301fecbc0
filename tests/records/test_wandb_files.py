"""The offline run-file reader against files written by the real W&B client."""

import pytest
import wandb

from tests.helpers import wait_until_finished
from xdrl.records.wandb_files import find_run_files, iter_record_payloads, read_run


@pytest.fixture
def run_file(tmp_path):
    run = wandb.init(project="records", dir=str(tmp_path), id="rec0001", name="reader", group="g")
    for step in range(3):
        run.log({"a/x": step, "a/y": 2 * step})
    # Long values force records across 32 KiB blocks.
    run.log({"blob": "z" * 70_000})
    run.finish(exit_code=3)
    files = find_run_files(tmp_path, "rec0001")
    assert len(files) == 1
    # wandb-core may still be writing the file when finish() returns (seen with wandb 0.31 after
    # other work in the process).
    return wait_until_finished(files[0])


def test_reads_identity_history_and_exit(run_file):
    records = read_run(run_file)
    assert (records.run_id, records.project, records.group, records.name) == ("rec0001", "records", "g", "reader")
    assert [row["a/x"] for row in records.history[:3]] == [0, 1, 2]
    assert [row["a/y"] for row in records.history[:3]] == [0, 2, 4]
    assert records.history[3]["blob"] == "z" * 70_000
    assert records.finished and records.exit_code == 3


def test_corrupt_chunk_is_detected(run_file, tmp_path):
    data = bytearray(run_file.read_bytes())
    data[40] ^= 0xFF
    broken = tmp_path / "broken.wandb"
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad checksum"):
        list(iter_record_payloads(broken))


def test_truncated_tail_is_tolerated_and_header_checked(run_file, tmp_path):
    data = run_file.read_bytes()
    partial = tmp_path / "partial.wandb"

    def exit_code(length):
        partial.write_bytes(data[:length])
        return read_run(partial).exit_code

    assert exit_code(len(data)) == 3
    exit_code(len(data) - 5)  # a torn last record, whichever it is, reads without an error
    # The exit record is not always the file's last bytes (once, in the full suite on a busy machine,
    # cutting 5 bytes left it whole: something came after it), so find the shortest prefix holding it.
    low, high = 0, len(data)
    while low < high:
        middle = (low + high) // 2
        if exit_code(middle) == 3:
            high = middle
        else:
            low = middle + 1
    assert low > 0
    assert exit_code(low - 1) is None  # the exit record cut by one byte: tolerated, not read
    not_wandb = tmp_path / "x.wandb"
    not_wandb.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not a W&B run file"):
        read_run(not_wandb)
