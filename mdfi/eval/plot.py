"""``mdfi eval --plot``: agreement, kept detections and bias against model size (matplotlib,
the optional ``plots`` extra)."""

from __future__ import annotations

from typing import Mapping

from ..errors import MDFIError


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MDFIError("--plot needs matplotlib (pip install mdfi[plots])") from None
    return plt


def check_plot_path(path: str) -> None:
    """Before the evaluation runs: matplotlib is there and writes ``path``'s format (a name
    without one would get ``.png`` appended, a name it does not know was a traceback)."""
    plt = _pyplot()
    kinds = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if ext not in kinds:
        raise MDFIError(f"--plot {path}: {'no file extension' if not ext else f'matplotlib cannot write .{ext} files'} "
                        f"(give FILE.png; also {', '.join(sorted(k for k in kinds if k != 'png'))})")


def write_plot(path: str, results: Mapping[str, object], size_vs_float: Mapping[str, float], *,
               title: str = "") -> None:
    """One PNG with three panels over the configurations (x: parameters vs float32, %):
    agreement mAP@0.5, float detections kept at 0.25 (%), and the confidence bias."""
    plt = _pyplot()
    tags = list(results)
    x = [100.0 * size_vs_float[t] for t in tags]
    panels = [("agreement mAP@0.5", [results[t].map for t in tags]),
              ("kept at 0.25 (%)", [None if results[t].kept_fraction is None else 100 * results[t].kept_fraction
                                    for t in tags]),
              ("bias: mean Δconf", [results[t].mean_dconf_ranked for t in tags])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (name, ys) in zip(axes, panels):
        pts = [(a, b, t) for a, b, t in zip(x, ys, tags) if b is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o")
        for a, b, t in pts:
            ax.annotate(t, (a, b), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("parameters vs float32 (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[2].axhline(0.0, color="grey", lw=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise MDFIError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
