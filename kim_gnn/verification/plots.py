"""Parity plots of a verification report: converted vs original model.

The figure a model developer puts in a paper or an OpenKIM submission: per-atom
energies and force components of the converted model against the original
periodic model on every verified structure, and the distribution of the
differences. Needs matplotlib (``pip install matplotlib``); nothing else in
kim_gnn does.
"""

import os

import numpy as np

from ..errors import KimGnnError


def require_matplotlib() -> None:
    """Fail early, in words, where matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise KimGnnError("--plot needs matplotlib (pip install matplotlib)") from None


def _collect(report):
    energy_o, energy_c, atomic_o, atomic_c, force_o, force_c = [], [], [], [], [], []
    for sample in report.samples:
        n = max(1, sample["n_atoms"])
        energy_o.append(sample["energy"][0] / n)
        energy_c.append(sample["energy"][1] / n)
        original, converted = sample["energies"]
        if original is not None and converted is not None and np.all(np.isfinite(converted)):
            atomic_o.append(np.asarray(original, dtype=float).reshape(-1))
            atomic_c.append(np.asarray(converted, dtype=float).reshape(-1))
        force_o.append(sample["forces"][0].reshape(-1))
        force_c.append(sample["forces"][1].reshape(-1))

    def cat(parts):
        return np.concatenate(parts) if parts else np.zeros(0)

    return (np.asarray(energy_o), np.asarray(energy_c), cat(atomic_o), cat(atomic_c), cat(force_o), cat(force_c))


def _parity(ax, x, y, label, unit, color):
    if x.size:
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=0.8, zorder=0)
        ax.scatter(x, y, s=8, color=color, alpha=0.7, linewidths=0)
        err = np.abs(y - x).max()
        ax.text(0.04, 0.96, f"max |diff| = {err:.2e} {unit}", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(f"original {label} ({unit})")
    ax.set_ylabel(f"converted {label} ({unit})")
    ax.set_title(label)


def write_parity_plot(report, path) -> str:
    """Write the parity plot of ``report`` (a ``VerificationReport``) to
    ``path`` (PNG, PDF or SVG by its suffix); returns the path."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not report.samples:
        raise KimGnnError("the report has no evaluated structures to plot")
    energy_o, energy_c, atomic_o, atomic_c, force_o, force_c = _collect(report)
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    _parity(axes[0], energy_o, energy_c, "energy per atom", "eV/atom", "C0")
    _parity(axes[1], atomic_o, atomic_c, "per-atom energy", "eV", "C2")
    _parity(axes[2], force_o, force_c, "force component", "eV/A", "C1")

    ax = axes[3]
    tiny = 1e-18  # exact agreement shows at the left edge of a log axis
    series = [
        ("energy/atom (eV)", np.abs(energy_c - energy_o), "C0"),
        ("per-atom energy (eV)", np.abs(atomic_c - atomic_o), "C2"),
        ("force comp. (eV/A)", np.abs(force_c - force_o), "C1"),
    ]
    values = np.concatenate([s[1] for s in series if s[1].size]) + tiny
    bins = np.logspace(np.log10(values.min()), np.log10(max(values.max(), values.min() * 10)), 40)
    for label, err, color in series:
        if err.size:
            ax.hist(err + tiny, bins=bins, histtype="step", color=color, label=label)
    for name, tol in report.tolerances.items():
        if name in ("energy_per_atom", "forces"):
            ax.axvline(tol, color="C0" if name == "energy_per_atom" else "C1", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("|converted - original| (dashed: tolerances)")
    ax.set_ylabel("count")
    ax.set_title("error distribution")
    ax.legend(fontsize=7)

    verdict = "PASSED" if report.passed else "FAILED"
    fig.suptitle(
        f"{os.path.basename(str(report.converted))} vs {os.path.basename(str(report.original))} "
        f"({report.architecture}, {report.model_dtype}): {len(report.cases)} structures, {verdict}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return os.fspath(path)
