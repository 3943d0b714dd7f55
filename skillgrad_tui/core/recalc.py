"""Formula recalculation with headless LibreOffice.

openpyxl writes formulas but never computes them, so a workbook saved by an agent's script has
formula cells without cached values, and `load_workbook(data_only=True)` reads them as None.
SpreadsheetBench's own harness fixes this by opening and re-saving outputs in LibreOffice
(upstream evaluation/open_spreadsheet.py); this module does the same, on a copy, with a private
LibreOffice profile per call so that parallel workers never share (and lock) one profile.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import zipfile
from pathlib import Path
from xml.etree.ElementTree import iterparse

from skillgrad_tui.core.errors import SkillgradError

# Where LibreOffice lands on common systems when it is not on PATH.
_SOFFICE_CANDIDATES = (
    "/usr/lib/libreoffice/program/soffice",
    "/usr/local/lib/libreoffice/program/soffice",
    "/opt/libreoffice/program/soffice",
    "/Applications/LibreOffice.app/Contents/MacOS/soffice",
)

# Seeded into each private profile: never recalculate formulas that HAVE a cached value (1 =
# never), for OOXML and ODF alike. Formulas with no cached value are computed either way, which
# is all we need; recomputing the rest would replace Excel's results with LibreOffice's where the
# two disagree (golden files of tasks 54590 and 37462 then fail against themselves). Pinned here
# rather than left to whatever the installation's default is.
_PROFILE_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" \
xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" \
oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" \
oor:op="fuse"><value>1</value></prop></item>
</oor:items>
"""

_INSTALL_HINT = (
    "install LibreOffice Calc (Debian/Ubuntu: apt-get install -y --no-install-recommends "
    "libreoffice-calc) or set SKILLGRAD_SOFFICE to the soffice binary"
)


_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


class RecalcError(SkillgradError):
    """LibreOffice is missing, or it could not recalculate a workbook."""


def find_soffice() -> str | None:
    """The LibreOffice binary: $SKILLGRAD_SOFFICE, then PATH, then the usual install places."""
    override = os.environ.get("SKILLGRAD_SOFFICE")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return found
    for candidate in _SOFFICE_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def needs_recalc(xlsx: Path) -> bool:
    """True when some formula cell has no cached value (openpyxl writes formulas that way).

    Reads the sheet XML directly rather than loading the workbook twice with openpyxl: a
    formula cell is `<c><f>..</f><v>..</v></c>`, and the cached value is the `<v>` text.
    """
    xlsx = Path(xlsx)
    try:
        with zipfile.ZipFile(xlsx) as zf:
            sheets = [n for n in zf.namelist()
                      if n.startswith("xl/worksheets/") and n.endswith(".xml")]
            for name in sheets:
                data = zf.read(name)
                if not _FORMULA_TAG.search(data):
                    continue  # most sheets hold no formula at all: skip the XML parse
                with io.BytesIO(data) as fh:
                    for _event, elem in iterparse(fh, events=("end",)):
                        tag = _local(elem.tag)
                        if tag == "c":
                            has_formula = False
                            cached = None
                            for child in elem:
                                ctag = _local(child.tag)
                                if ctag == "f":
                                    has_formula = True
                                elif ctag == "v":
                                    cached = child.text
                            # t="str" with an empty <v> is a cached empty-string result
                            if has_formula and not cached and elem.get("t") != "str":
                                return True
                            elem.clear()
                        elif tag == "row":
                            elem.clear()  # keep memory flat on big sheets
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise RecalcError(f"cannot read workbook: {exc}", xlsx) from exc
    except SyntaxError as exc:  # xml.etree.ElementTree.ParseError
        raise RecalcError(f"malformed sheet XML: {exc}", xlsx) from exc
    return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def recalculate(xlsx: Path, out_dir: Path, timeout_s: float = 120,
                soffice: str | None = None) -> Path:
    """Open `xlsx` in headless LibreOffice, recalculate, save as `out_dir/<stem>.xlsx`.

    The source is never touched: LibreOffice reads a private copy (it would otherwise drop a
    `.~lock` file beside the user's workbook). Returns the path of the recalculated workbook.
    """
    xlsx = Path(xlsx)
    out_dir = Path(out_dir)
    if not xlsx.is_file():
        raise RecalcError("workbook to recalculate does not exist", xlsx)
    dest = out_dir / (xlsx.stem + ".xlsx")
    if dest.resolve() == xlsx.resolve():
        raise RecalcError(f"output directory {out_dir} would overwrite the source workbook", xlsx)
    binary = soffice or find_soffice()
    if binary is None:
        raise RecalcError(f"LibreOffice (soffice) not found: {_INSTALL_HINT}", xlsx)

    with tempfile.TemporaryDirectory(prefix="skillgrad-soffice-") as tmp:
        tmp_path = Path(tmp)
        profile = tmp_path / "profile"
        (profile / "user").mkdir(parents=True)
        (profile / "user" / "registrymodifications.xcu").write_text(_PROFILE_SETTINGS, "utf-8")
        src_dir = tmp_path / "in"
        conv_dir = tmp_path / "out"
        src_dir.mkdir()
        conv_dir.mkdir()
        src = src_dir / (xlsx.stem + ".xlsx")
        shutil.copyfile(xlsx, src)
        cmd = [binary, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
               "--nologo", "--nodefault", "--nolockcheck", "--calc",
               "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(conv_dir), str(src)]
        env = {**os.environ, "HOME": str(tmp_path)}  # LibreOffice also writes under $HOME
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as exc:
            raise RecalcError(f"cannot start LibreOffice {binary}: {exc}", xlsx) from exc
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise RecalcError(f"LibreOffice did not finish within {timeout_s:g} s", xlsx) from None
        finally:
            _kill_group(proc)  # oosplash may leave soffice.bin behind
        converted = conv_dir / src.name
        if proc.returncode != 0 or not converted.is_file():
            detail = (stderr or stdout).decode("utf-8", "replace").strip()[-500:]
            raise RecalcError(
                f"LibreOffice failed to recalculate (exit {proc.returncode})"
                + (f": {detail}" if detail else ""), xlsx)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(converted), dest)
    return dest
