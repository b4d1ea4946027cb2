"""The launch cells every notebook starts with: an "Open in Colab" badge and a Colab-only setup cell.

Notebook builders call :func:`ensure_launch_cells` so the cells stay identical across notebooks;
the repository address comes from :data:`uldviz.REPO_URL` (one place to change it).
"""

from __future__ import annotations

from uldviz.env import REPO_URL

LAUNCH_TAG = "uldviz-launch"

#: Kernel metadata every notebook carries, so JupyterLab starts Python without asking and Colab knows the language.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _github_path(repo_url: str) -> str:
    """``owner/name`` of a GitHub address: Colab and Binder open notebooks straight from GitHub."""
    if "github.com/" not in repo_url:
        raise ValueError(f"repo_url must be a https://github.com/OWNER/NAME address, got {repo_url!r}")
    path = repo_url.split("github.com/", 1)[1].strip("/").removesuffix(".git")
    if path.count("/") != 1:
        raise ValueError(f"repo_url must be a https://github.com/OWNER/NAME address, got {repo_url!r}")
    return path


def colab_url(notebook_filename: str, repo_url: str = REPO_URL, branch: str = "main") -> str:
    """The Colab address that opens ``notebooks/<notebook_filename>`` from the repository's branch."""
    return (
        f"https://colab.research.google.com/github/{_github_path(repo_url)}/blob/{branch}/notebooks/{notebook_filename}"
    )


def binder_url(repo_url: str = REPO_URL, branch: str = "main") -> str:
    """The Binder address that builds ``environment.yml`` and opens JupyterLab on ``notebooks/``."""
    return f"https://mybinder.org/v2/gh/{_github_path(repo_url)}/{branch}?urlpath=lab/tree/notebooks"


def setup_source(repo_url: str = REPO_URL) -> str:
    """Source of the first code cell: on Colab, clone + install the kit quietly and enable widgets."""
    return f'''# Launch cell: on Google Colab this installs the kit (about a minute); elsewhere it does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO_URL = "{repo_url}"  # the same address as uldviz.REPO_URL (checked by the tests)
    if not os.path.isdir("/content/uldviz"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, "/content/uldviz"], check=True)
    # The kit with what the notebooks need ([notebooks], no JupyterLab); Colab's own torch and ipywidgets 7.7
    # already satisfy it: nothing is upgraded.
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/uldviz[notebooks]"],
                          capture_output=True, text=True)
    print("uldviz installed" if done.returncode == 0 else "pip failed:\\n" + done.stderr[-1500:])
    sys.path.insert(0, "/content/uldviz")
    os.chdir("/content/uldviz/notebooks")
    from google.colab import output

    output.enable_custom_widget_manager()
'''


def launch_cells(notebook_filename: str, repo_url: str = REPO_URL) -> list:
    """The badge (markdown) and setup (code) cells, both tagged so they can be found and refreshed."""
    import nbformat  # only notebook builders and tests need it, not the kit at run time

    badge = (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(notebook_filename, repo_url)})"
    )
    # fixed cell ids: refreshing the cells changes nothing in a notebook that is already up to date
    md = nbformat.v4.new_markdown_cell(badge, metadata={"tags": [LAUNCH_TAG]}, id="uldviz-launch-badge")
    code = nbformat.v4.new_code_cell(setup_source(repo_url), metadata={"tags": [LAUNCH_TAG]}, id="uldviz-launch-setup")
    return [md, code]


def ensure_launch_cells(nb, notebook_filename: str, repo_url: str = REPO_URL):
    """Put fresh launch cells at the top of ``nb`` (replacing old ones) and set its kernel metadata; returns ``nb``."""
    kept = [c for c in nb.cells if LAUNCH_TAG not in c.get("metadata", {}).get("tags", [])]
    nb.cells = launch_cells(notebook_filename, repo_url) + kept
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz.course.colab [NOTEBOOK ...]``: refresh the launch cells in place (all of notebooks/ by
    default).

    Run it after changing :data:`uldviz.REPO_URL` so every badge and setup cell points at the new address.
    """
    import sys
    from pathlib import Path

    import nbformat

    args = list(sys.argv[1:] if argv is None else argv)
    paths = [Path(a) for a in args] or sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(ensure_launch_cells(nb, path.name), path)
        print(f"launch cells refreshed: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
