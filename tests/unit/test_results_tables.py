"""The README's result tables are what benchmarks/results_tables.py makes of the committed JSON.

A benchmark rerun that changes a figure, or a hand edit of a table, fails here until
`make results` has rewritten the README from benchmarks/results/.
"""

import difflib

from benchmarks import results_tables


def test_readme_result_tables_equal_the_committed_results():
    readme = results_tables.README.read_text()
    generated = results_tables.render(readme)
    diff = "".join(
        difflib.unified_diff(
            readme.splitlines(True), generated.splitlines(True), "README.md", "generated"
        )
    )
    assert not diff, (
        f"README result tables drifted from benchmarks/results/; run `make results`:\n{diff}"
    )


def test_every_table_reads_a_committed_result_file():
    for name, (_, files) in results_tables.TABLES.items():
        for f in files:
            assert (results_tables.RESULTS / f).is_file(), f"{name}: {f} missing"
        assert f"<!-- results:{name} -->" in results_tables.README.read_text()


def test_a_changed_figure_is_caught(tmp_path, monkeypatch):
    readme = results_tables.README.read_text()
    tampered = readme.replace("| 1,000 | 9,715 of 9,801 |", "| 1,000 | 9,800 of 9,801 |")
    assert tampered != readme
    path = tmp_path / "README.md"
    path.write_text(tampered)
    assert results_tables.main(["--check", "--readme", str(path)]) == 1
    assert results_tables.main(["--readme", str(path)]) == 0
    assert path.read_text() == readme
