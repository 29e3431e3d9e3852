"""`clbench report`: the page is looked at as a person would, in the system's headless Chromium (tests/browser.py):
its tables hold the records' numbers, its pictures decode, a click on a column sorts it, it renders non-blank at a
desktop and a phone width, nothing is fetched from the network, and a malformed record is listed as unreadable
while the rest shows as usual. Without Chromium these tests skip; under CLBENCH_REQUIRE_ENGINES=1 (CI) they fail.
"""
from __future__ import annotations

import io
import json
import os
import re
import shlex
import statistics

import pytest

from clbench.core.errors import UsageError

TINY = ["--dataset", "digits", "--steps", "2", "--memory", "3ipc", "--orders", "2", "--profile", "quick",
        "--device", "cpu", "--width", "8", "--train", "epochs=3"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two continual runs, one static run, one malformed record and one file that is not JSON."""
    from clbench.protocol.config import RunConfig
    from clbench.protocol.continual import run
    from clbench.protocol.static import StaticConfig, run_static

    folder = tmp_path_factory.mktemp("results")
    base = dict(dataset="digits", steps=2, orders=2, memory="3ipc", width=8, profile="quick", device="cpu",
                train={"epochs": 12}, out=str(folder))
    runs = {c: run(RunConfig(condenser=c, opt=opt, **base)) for c, opt in (("random", {}), ("dm", {"iterations": 3}))}
    static = run_static(StaticConfig(condenser="random", dataset="digits", ipc=2, sets=1, evals=1, width=8,
                                     eval_nets=("convnet",), profile="quick", device="cpu", out=str(folder),
                                     train={"epochs": 1}))
    broken = json.loads(runs["random"][0].read_text())
    del broken["config"]
    (folder / "broken-record.json").write_text(json.dumps({**broken, "run_id": "broken"}))
    (folder / "not-json.json").write_text("{ this is not json")
    return folder, runs, static


@pytest.fixture(scope="module")
def page(results, tmp_path_factory):
    from clbench.report.page import write_report

    folder, _, _ = results
    out = tmp_path_factory.mktemp("page") / "report.html"
    path, built, size = write_report([folder], out)
    return path, built


@pytest.fixture(scope="module")
def browser():
    from tests.browser import Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        reason = "no Chromium (Debian: apt-get install chromium; `make engines` installs it as root)"
        if os.environ.get("CLBENCH_REQUIRE_ENGINES") == "1":
            pytest.fail(f"{reason} (CLBENCH_REQUIRE_ENGINES=1: the browser tests must run here)", pytrace=False)
        pytest.skip(reason)
    b = Browser(executable)
    yield b
    b.close()


def _final_mean_std(record) -> tuple[float, float]:
    """Final accuracy over orders x networks, computed here from the steps (population std)."""
    values = [a for o in record["orders"] for a in o["steps"][-1]["accuracies"]]
    return statistics.fmean(values), statistics.pstdev(values)


def _column(browser, table: int, title: str) -> list[str]:
    return browser.js(f"""(() => {{
        const t = document.querySelectorAll("table.sortable")[{table}];
        const i = Array.from(t.tHead.rows[0].cells).findIndex(h => h.textContent.trim() === {json.dumps(title)});
        return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent.trim()); }})()""")


def test_the_page_shows_the_records_numbers_pictures_and_problems(page, results, browser):
    path, built = page
    _, runs, (_, static) = results
    browser.open(path)
    assert browser.js("document.title").startswith("clbench results")
    conds = _column(browser, 0, "condenser")
    finals = dict(zip(conds, _column(browser, 0, "final acc (%)")))
    for name, (_, record) in runs.items():
        mean, std = _final_mean_std(record)
        assert finals[name] == f"{mean:.2f} ± {std:.2f}"
    static_cells = browser.js("""Array.from(document.querySelectorAll("#static table.sortable td"))
                                 .map(td => td.textContent.trim())""")
    accs = static["sets"][0]["accuracies"]["convnet"]
    assert f"{statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f}" in static_cells
    # every record's first picture is embedded and decodes once its record is opened (a click away)
    widths = browser.js("""(() => { document.querySelectorAll("details").forEach(d => { d.open = true; });
        return Promise.all(Array.from(document.querySelectorAll("img.memory"))
                           .map(i => i.decode().then(() => i.naturalWidth, () => 0))); })()""")
    assert len(widths) == 3 and all(w > 0 for w in widths)
    problems = browser.js("Array.from(document.querySelectorAll('#problems li')).map(li => li.textContent)")
    assert len(problems) == 2
    assert any("broken-record.json" in p and "config" in p for p in problems)
    assert any("not-json.json" in p and "not valid JSON" in p for p in problems)
    commands = browser.js("Array.from(document.querySelectorAll('code.command')).map(c => c.textContent)")
    assert len(commands) == 3 and all(c.startswith("clbench ") for c in commands)


def test_a_click_on_a_column_title_sorts_its_rows(page, browser):
    path, _ = page
    browser.open(path)
    head = "#continual table.sortable thead th"
    titles = browser.js(f"Array.from(document.querySelectorAll({json.dumps(head)})).map(h => h.textContent.trim())")
    column = titles.index("final acc (%)") + 1
    selector = f"#continual table.sortable thead th:nth-child({column})"

    def numbers() -> list[float]:
        return [float(c.split()[0]) for c in _column(browser, 0, "final acc (%)")]

    browser.click(selector)
    assert numbers() == sorted(numbers())
    assert browser.js(f"document.querySelector({json.dumps(selector)}).getAttribute('aria-sort')") == "ascending"
    browser.click(selector)
    assert numbers() == sorted(numbers(), reverse=True)
    conds = _column(browser, 0, "condenser")
    browser.click(f"#continual table.sortable thead th:nth-child({titles.index('condenser') + 1})")
    assert _column(browser, 0, "condenser") == sorted(conds)


@pytest.mark.parametrize("width,mobile", [(1280, False), (390, True)])
def test_the_page_renders_non_blank_and_fits_the_width(page, browser, width, mobile):
    from PIL import Image, ImageStat

    path, _ = page
    browser.open(path, width=width, height=900, mobile=mobile)
    assert browser.js("document.documentElement.scrollWidth") <= width  # tables scroll inside their own box
    shot = Image.open(io.BytesIO(browser.screenshot())).convert("L")
    assert shot.size[0] == width
    dark = sum(shot.histogram()[:128]) / (shot.size[0] * shot.size[1])
    assert dark > 0.01 and ImageStat.Stat(shot).stddev[0] > 10  # text and lines, not an empty page


def test_nothing_is_fetched_from_the_network(page):
    path, _ = page
    html = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html


def test_the_command_of_a_record_runs_it_again_to_the_same_numbers(results, cli, tmp_path):
    from clbench.report.page_parts import reproduce_command

    _, runs, _ = results
    path, record = runs["dm"]
    words = shlex.split(reproduce_command(record))
    assert words[:2] == ["clbench", "run"]
    assert "--out" not in words
    code, out, err = cli("run", *words[2:], "--out", str(tmp_path))
    assert code == 0, err
    (again,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert [[s["accuracies"] for s in o["steps"]] for o in again["orders"]] == \
        [[s["accuracies"] for s in o["steps"]] for o in record["orders"]]


BAD_INPUTS = {  # name -> (the arguments after `report`, given the results folder and tmp_path; the message)
    "out-is-a-users-file": (lambda f, t: [f, "--out", t / "notes.html"], "is not a clbench report"),
    "out-not-html": (lambda f, t: [f, "--out", t / "page.txt"], "ending in .html"),
    "out-is-a-fifo": (lambda f, t: [f, "--out", t / "f.html"], "is not a regular file"),
    "missing-source": (lambda f, t: [t / "missing", "--out", t / "r.html"], "no such file or folder"),
    "bad-images": (lambda f, t: [f, "--images", "some", "--out", t / "r.html"], "--images 'some'"),
    "empty-source": (lambda f, t: [t / "empty", "--out", t / "r.html"], "no run records, diagnoses or sweeps found"),
    "unknown-baseline": (lambda f, t: [f, "--baseline", "dsa", "--out", t / "r.html"],
                         "--baseline 'dsa': no record of that condenser"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_report_refuses_bad_input_before_any_work(results, cli, tmp_path, case):
    folder, _, _ = results
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my own notes</html>")
    os.mkfifo(tmp_path / "f.html")
    (tmp_path / "empty").mkdir()
    arguments, message = BAD_INPUTS[case]
    code, _, err = cli("report", *map(str, arguments(folder, tmp_path)))
    assert code == 2 and message in err
    assert mine.read_text() == "<html>my own notes</html>" and not (tmp_path / "r.html").exists()


def test_a_second_report_replaces_the_first_and_images_none_leaves_them_out(results, cli, tmp_path):
    folder, _, _ = results
    out = tmp_path / "r.html"
    assert cli("report", str(folder), "--out", str(out))[0] == 0
    with_images = out.stat().st_size
    code, stdout, _ = cli("report", str(folder), "--out", str(out), "--images", "none")
    assert code == 0 and "report:" in stdout
    assert out.stat().st_size < with_images and "img class=\"memory\"" not in out.read_text()
    link = tmp_path / "latest.html"  # a link to an earlier report: the report it names is replaced, the link kept
    link.symlink_to(out)
    assert cli("report", str(folder), "--out", str(link))[0] == 0
    assert link.is_symlink() and "img class=\"memory\"" in out.read_text()  # with images again, written there


def test_sort_values_read_the_leading_number():
    from clbench.report.page_parts import sort_value

    assert sort_value("78.10 ± 0.79") == 78.1
    assert sort_value("5 (0-4)") == 5.0
    assert sort_value("+2.37") == 2.37 and sort_value("-0.50") == -0.5
    assert sort_value("<0.001") == 0.001
    assert sort_value("-") is None and sort_value("") is None
    assert sort_value("DM") == "dm"


def test_images_mode_is_checked(tmp_path):
    from clbench.report.page import build_report

    with pytest.raises(UsageError, match="choose one of preview, full, none"):
        build_report([tmp_path], images="all")


def test_a_sweep_folder_shows_its_jobs_states_and_only_its_gathered_records(cli, tmp_path):
    """A planned sweep of three orders, one finished (a fake record in its job folder, as in tests/test_sweep.py):
    the page's sweep table has one row per job with its state, and the job's own record copy is not read."""
    from clbench.sweep import driver
    from clbench.sweep import spec as sw
    from tests.test_sweep import write_fake_record

    spec = sw.parse_spec({"dataset": "digits", "orders": 3, "device": "cpu", "steps": 2}, folder=tmp_path / "sw")
    jobs = driver.plan(spec, "local")
    write_fake_record(jobs[0])
    out = tmp_path / "page.html"
    code, stdout, err = cli("report", str(tmp_path / "sw"), "--out", str(out))
    assert code == 0, err
    html = out.read_text()
    section = html[html.index('<section id="sweeps">'):]
    section = section[: section.index("</section>")]
    assert section.count("<tr>") == 1 + 3  # header + one row per job
    assert section.count(">done<") == 1 and section.count(">not started<") == 2
    assert "0 record(s)" in html  # the job folder's copy is left to the gathered records


def test_a_source_given_twice_is_read_once(results, cli, tmp_path):
    folder, runs, _ = results
    code, out, err = cli("report", str(folder), str(folder), str(next(iter(runs.values()))[0]),
                         "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "3 record(s)" in out
    ids = re.findall(r'<details id="(record-[^"]+)"', (tmp_path / "r.html").read_text())
    assert len(ids) == len(set(ids)) == 3


def test_a_diagnosis_file_is_shown_as_diagnose_prints_it_not_listed_as_unreadable(cli, tmp_path):
    """A `clbench diagnose` document (the committed one) is read once, as a diagnosis: its table is on the page."""
    import shutil
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "results" / "reference-diagnose" / "diagnose-dm-ddm.json"
    shutil.copy(source, tmp_path / "diagnosis.json")
    code, _, err = cli("report", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert code == 0 and "unreadable" not in err
    html = (tmp_path / "r.html").read_text()
    assert 'id="diagnoses"' in html and "diagnosis: diagnosis.json" in html and "style gap: Gram" in html


def test_a_picture_that_is_not_a_regular_file_is_listed_not_read(results, tmp_path):
    """A memory picture replaced by a folder (or a FIFO, which a read would block on) is left out, with a note."""
    import shutil

    from clbench.report.page import write_report

    folder, runs, _ = results
    copy = tmp_path / "copy"
    path = runs["random"][0]
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.lock"))
    record = json.loads((copy / path.name).read_text())
    png = copy / record["orders"][0]["memory_file"].replace(".pt", ".png")
    png.unlink()
    png.mkdir()
    _, built, _ = write_report([copy], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "is not a regular file; left out" in html and "order 0 picture" in html
