"""The generated blocks of the README and ``docs/``: the text between a pair of marker lines, as
``tables.py``, ``precision_report.py`` and ``sweep_report.py`` print it from ``results/``;
``launch.report --check`` names the stale ones and ``--write`` rewrites them.
"""

from __future__ import annotations

from pathlib import Path

from playbook.run import precision_report, sweep_report
from playbook.run.results import PRECISION_DIR, RESULTS_DIR, ROOT, ReportError, reference
from playbook.run.tables import export_block, study_block, table

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
STUDY_BEGIN = "<!-- results:{study}:begin -->"
STUDY_END = "<!-- results:{study}:end -->"


def between(text: str, begin: str, end: str) -> str | None:
  """The text between two marker lines, without them, or None where they are missing."""
  if begin not in text or end not in text:
    return None
  return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def replace_between(text: str, begin: str, end: str, body: str) -> str:
  if begin not in text or end not in text:
    raise ReportError(f"markers {begin} / {end} missing")
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  return f"{head}{begin}\n{body}\n{end}{tail}"


def documents(root: Path = RESULTS_DIR, repo: Path = ROOT) -> dict[Path, list[tuple[str, str,
                                                                                   str]]]:
  """Every generated block: file -> [(begin marker, end marker, expected body)]."""
  readme = [(BEGIN, END, table(root))]
  if (root / PRECISION_DIR).is_dir():
    readme.append((precision_report.BEGIN, precision_report.END,
                   precision_report.block(root, repo)))
  out = {repo / "README.md": readme}
  export_page = repo / "docs" / "export.md"
  if export_page.exists():
    out[export_page] = [(STUDY_BEGIN.format(study="export"), STUDY_END.format(study="export"),
                         export_block(root))]
  for study in reference(root)["order"]:
    page = repo / "docs" / "studies" / f"{study}.md"
    if page.exists():
      out[page] = [(STUDY_BEGIN.format(study=study), STUDY_END.format(study=study),
                    study_block(study, root, repo))]
      sweeps = (sweep_report.BEGIN.format(study=study), sweep_report.END.format(study=study))
      if sweep_report.entries(study, root) or sweeps[0] in page.read_text():
        out[page].append((*sweeps, sweep_report.block(study, root)))
  return out


def stale_blocks(root: Path = RESULTS_DIR, repo: Path = ROOT) -> list[str]:
  """Files whose generated blocks differ from what results/ gives now (or lack the markers)."""
  stale = []
  for path, blocks in documents(root, repo).items():
    text = path.read_text()
    for begin, end, body in blocks:
      if between(text, begin, end) != body:
        stale.append(f"{path.relative_to(repo)} ({begin})")
  return stale


def write_blocks(root: Path = RESULTS_DIR, repo: Path = ROOT) -> list[Path]:
  written = []
  for path, blocks in documents(root, repo).items():
    text = new = path.read_text()
    for begin, end, body in blocks:
      new = replace_between(new, begin, end, body)
    if new != text:
      path.write_text(new)
      written.append(path)
  return written
