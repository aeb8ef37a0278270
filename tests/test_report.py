"""The HTML report: self-contained, escaped, key numbers beside the paper's, settings listed."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pandas as pd
from cohort_factory import make_cohort
from PIL import Image

from serialct import report
from serialct.config import defaults
from serialct.report import write_report
from serialct.stats import run_cohort_stats


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path)
    return path


def test_qc_thumbnails_are_downscaled(tmp_path: Path) -> None:
    big = tmp_path / "qc.png"
    Image.new("RGBA", (1548, 412), (10, 200, 30, 255)).save(big)
    tag = report._img(big, "thumb", report.QC_THUMB_WIDTH)
    data = base64.b64decode(tag.split("base64,")[1].split('"')[0])
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (report.QC_THUMB_WIDTH, round(412 * report.QC_THUMB_WIDTH / 1548))
    assert len(data) < big.stat().st_size


def test_report_sections_and_embedding(tmp_path: Path, monkeypatch) -> None:
    scans, clinical = make_cohort(10, seed=3)
    stats_dir = tmp_path / "stats"
    run_cohort_stats(scans, clinical, defaults(), stats_dir)
    tables = tmp_path / "tables"
    tables.mkdir()
    scans.assign(qc_status=["ok"] * (len(scans) - 1) + ["lung <small> & odd"]).to_csv(
        tables / "scans.tsv", sep="\t", index=False
    )
    figures = tmp_path / "figures"
    png(figures / "figure2.png")
    monkeypatch.setattr(report, "MAX_QC", 2)
    qc = [png(tmp_path / "scans" / "A" / f"A00{i}" / "S01" / "qc.png") for i in range(1, 4)]
    config = defaults()
    config["hu"]["ggo"] = [-700, -310]
    out = tmp_path / "out" / "report.html"
    write_report(out, stats_dir, tables, figures, qc, config)
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 1  # one figure
    assert html.count("data:image/jpeg;base64,") == 2  # two QC thumbnails
    assert "Figure 2. Percent of pulmonary lesions" in html  # captions
    assert html.count('class="caption"') >= 5 + 1 + 3 + 1
    for heading in ("Peak days with bootstrap", "Mixed-effects model", "Per-centre summary"):
        assert heading in html
    assert "QC thumbnails shown for the first 2 of 3 scans" in html
    assert 'href="../scans/A/A001/S01/qc.png"' in html  # the thumbnail opens the full size
    assert html.count('<svg class="timeline"') == scans["patient_id"].nunique()
    assert 'name="viewport"' in html  # phone widths
    assert "lung &lt;small&gt; &amp; odd" in html
    assert "QC warnings: 1 of" in html
    assert "[-700, -310]" in html  # the settings actually used, not the defaults
    for i in range(1, 6):
        assert f"Table {i}." in html
    rho = pd.read_csv(stats_dir / "correlations.tsv", sep="\t").iloc[0]["rho"]
    assert f"{rho:.3f} (n={len(scans)})" in html and "0.920 (n=465)" in html
    assert re.search(
        r"peak of lesion_percent, severe.*?day \d+\.\d( \(95 % CI [\d.]+-[\d.]+\))?, \d+\.\d\d %",
        html,
    )
    assert re.search(
        r"peak of lesion_percent, moderate.*?day \d+\.\d \(95 % CI [\d.]+-[\d.]+\)", html
    )
    assert 'src="http' not in html and "<link" not in html  # nothing external


def test_skipped_series_are_listed_with_their_reason(tmp_path):
    from serialct.report import _skipped_series_section

    table = tmp_path / "A.series.tsv"
    table.write_text(
        "center\tpatient_id\tstudy_date\tseries_number\tchosen\treason\n"
        "A\tP1\t20200101\t1\tTrue\tchosen of 2 candidate(s)\n"
        "A\tP1\t20200101\t9\tFalse\tgantry tilt 18.5 deg: not supported\n"
    )
    html = _skipped_series_section([table])
    assert "(1 of 2)" in html
    assert "gantry tilt 18.5 deg" in html
    assert "chosen of 2" not in html


def test_model_line_names_the_model_and_its_validation(tmp_path) -> None:
    from serialct.report import model_line

    model = tmp_path / "net.pt"
    assert model_line(model) == "net.pt: no metadata beside the weights"
    model.with_suffix(".json").write_text('{"summary": "external Dice 0.7"}')
    assert model_line(model) == "net.pt: external Dice 0.7"
