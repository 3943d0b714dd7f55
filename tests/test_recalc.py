"""LibreOffice recalculation: detection of missing cached values, and real soffice runs."""

from __future__ import annotations

import os
import re
import stat
import threading
import zipfile
from pathlib import Path

import openpyxl
import pytest

from skillgrad_tui.core.recalc import RecalcError, find_soffice, needs_recalc, recalculate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "benchmarks" / "spreadsheetbench"

needs_soffice = pytest.mark.skipif(
    find_soffice() is None,
    reason="LibreOffice not installed (apt-get install -y --no-install-recommends libreoffice-calc)")


def _formulas(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws["A1"], ws["A2"] = 2, 3.5
    ws["B1"] = "=SUM(A1:A2)"
    ws["B2"] = '=A1&"x"'
    ws["B3"] = '=IF(A1>5,"big","")'
    other = wb.create_sheet("Other")
    other["A1"] = "=Data!A1*10"
    wb.save(path)
    return path


def _values(path: Path) -> Path:
    wb = openpyxl.Workbook()
    wb.active["A1"] = 1
    wb.active["A2"] = "text"
    wb.save(path)
    return path


def _with_cached(path: Path, dest: Path, cached: dict[str, str]) -> Path:
    """Copy an openpyxl workbook, giving some formula cells a cached value (as Excel would)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dest, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                for ref, value in cached.items():
                    text, n = re.subn(rf'(<c r="{ref}"[^>]*>)(<f>[^<]*</f>)<v\s*/>',
                                      rf"\1\2<v>{value}</v>", text)
                    assert n == 1, ref
                data = text.encode()
            out.writestr(item, data)
    return dest


def test_needs_recalc_detects_formulas_without_cached_values(tmp_path: Path) -> None:
    assert needs_recalc(_formulas(tmp_path / "f.xlsx"))
    assert not needs_recalc(_values(tmp_path / "v.xlsx"))
    cached = _with_cached(tmp_path / "f.xlsx", tmp_path / "c.xlsx", {"B1": "5.5", "B2": "2x"})
    assert needs_recalc(cached)  # B3 and Other!A1 still have none


@pytest.mark.skipif(not BENCH.is_dir(), reason=f"shared benchmarks not found at {BENCH}")
def test_needs_recalc_on_real_workbooks() -> None:
    # Saved by Excel, all carry cached values; nine have formulas whose cached result is an
    # empty string (t="str" with an empty <v>), which must not count as missing.
    files = sorted(BENCH.glob("spreadsheet/*/1_*_*.xlsx"))
    assert len(files) == 120
    assert [f.name for f in files if needs_recalc(f)] == []
    with zipfile.ZipFile(BENCH / "spreadsheet/208-20/1_208-20_golden.xlsx") as zf:
        sheets = "".join(zf.read(n).decode() for n in zf.namelist() if n.startswith("xl/worksheets/"))
    assert re.search(r'<c [^>]*t="str"[^>]*><f[^>]*>[^<]*</f><v\s*/>', sheets)


def test_needs_recalc_names_an_unreadable_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a workbook")
    with pytest.raises(RecalcError) as err:
        needs_recalc(junk)
    assert err.value.path == junk


def test_missing_soffice_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILLGRAD_SOFFICE", str(tmp_path / "no-such-soffice"))
    assert find_soffice() is None
    src = _formulas(tmp_path / "f.xlsx")
    with pytest.raises(RecalcError) as err:
        recalculate(src, tmp_path / "out")
    assert "soffice" in str(err.value) and "libreoffice-calc" in str(err.value)
    assert str(src) in str(err.value)


def test_find_soffice_honours_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "soffice"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SKILLGRAD_SOFFICE", str(fake))
    assert find_soffice() == str(fake)
    with pytest.raises(RecalcError, match=r"exit 3"):  # a failing binary is reported, not ignored
        recalculate(_formulas(tmp_path / "f.xlsx"), tmp_path / "out")


def test_refuses_to_overwrite_its_source(tmp_path: Path) -> None:
    src = _formulas(tmp_path / "f.xlsx")
    with pytest.raises(RecalcError, match="overwrite"):
        recalculate(src, tmp_path)


@needs_soffice
def test_recalculate_fills_missing_values_and_keeps_the_source(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    src = _formulas(tmp_path / "src" / "f.xlsx")
    before = (src.read_bytes(), os.stat(src).st_mtime_ns)
    out = recalculate(src, tmp_path / "out")
    assert out == tmp_path / "out" / "f.xlsx"
    assert (src.read_bytes(), os.stat(src).st_mtime_ns) == before
    assert os.listdir(tmp_path / "src") == ["f.xlsx"]  # no .~lock file beside the user's file
    wb = openpyxl.load_workbook(out, data_only=True)
    assert [wb["Data"][c].value for c in ("B1", "B2", "B3")] == [5.5, "2x", None]
    assert wb["Other"]["A1"].value == 20
    assert not needs_recalc(out)  # an empty-string result counts as cached


@needs_soffice
def test_cached_values_are_kept_as_they_are(tmp_path: Path) -> None:
    # Excel's results must not be replaced by LibreOffice's: only missing values are computed.
    stale = _with_cached(_formulas(tmp_path / "f.xlsx"), tmp_path / "stale.xlsx", {"B1": "99"})
    wb = openpyxl.load_workbook(recalculate(stale, tmp_path / "out"), data_only=True)
    assert wb["Data"]["B1"].value == 99
    assert wb["Data"]["B2"].value == "2x"


@needs_soffice
def test_parallel_runs_do_not_share_a_profile(tmp_path: Path) -> None:
    sources = [_formulas(tmp_path / f"f{i}.xlsx") for i in range(2)]
    results: dict[int, object] = {}

    def work(i: int) -> None:
        try:
            results[i] = recalculate(sources[i], tmp_path / f"out{i}")
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        out = results[i]
        assert isinstance(out, Path), out
        assert openpyxl.load_workbook(out, data_only=True)["Data"]["B1"].value == 5.5


@needs_soffice
def test_timeout_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RecalcError, match="did not finish"):
        recalculate(_formulas(tmp_path / "f.xlsx"), tmp_path / "out", timeout_s=0.05)
