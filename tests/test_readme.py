"""The README as a user meets it: its tour runs as written (with a short budget), its links lead somewhere, and
its figures each link to the page that generates them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_tour_runs_as_written(tmp_path):
    pytest.importorskip("akida")
    tour = README.split("## A tour")[1].split("```python\n")[1].split("```")[0]
    short = re.sub(r"learn\([\d_]+\)", "learn(600)", tour)
    assert short != tour  # (the budget was found and shortened)
    done = subprocess.run([sys.executable, "-c", short], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "return on Akida's engine:" in done.stdout and (tmp_path / "runs" / "cartpole_policy" / "akida_model.fbz").is_file()


def test_every_link_leads_to_a_file_and_no_sentence_is_dated():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", README)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", README) == []  # dates live with their figures, in docs/


def test_the_results_section_links_each_figure_to_its_page():
    results = README.split("## Results")[1].split("\n## ")[0]
    for item in results.split("\n- ")[1:]:
        if re.search(r"\d[\d.,]*\s*(%|x\b|/)", item):  # a figure (a percentage, a ratio, a mean / worst)
            assert re.search(r"\(docs/[A-Z_a-z]+\.md\)", item), item
