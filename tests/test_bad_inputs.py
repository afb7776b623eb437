"""Every bad argument and damaged file of benchmarks/bad_inputs.py (docs/BAD_INPUTS.md) ends in one line, exit 2."""

from benchmarks.bad_inputs import table


def test_every_bad_input_is_one_line_and_exit_2():
    rows, failures = table()
    assert len(rows) >= 45 and failures == 0, [row for row in rows if row.endswith("NO |")]
