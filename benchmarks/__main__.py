"""``python -m benchmarks``: run every benchmark and rewrite benchmarks/RESULTS.md."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    adapters,
    clustering,
    edgeconv,
    gcr_step,
    merging,
    minilm,
    modules,
    molrg_unets,
    pca_stream,
    probes,
    recsys,
    sae,
    scan,
    shapes,
    splats,
    training,
    upsample,
    wavelets,
    worlds_eigen,
    worlds_molrg,
)
from benchmarks.common import in_subprocess, machine

OUT = Path(__file__).with_name("RESULTS.md")


def pca_section() -> list[str]:
    """Streaming PCA vs scikit-learn vs the float32 matmul floor."""
    mod = "benchmarks.pca_stream"
    base = in_subprocess(mod, "baseline")
    floor = in_subprocess(mod, "floor")
    rows = {
        "float32 XᵀX (floor)": floor,
        "StreamingMoments float64 + eigh": in_subprocess(mod, "streaming"),
        "sklearn PCA(svd_solver='full')": in_subprocess(mod, "sklearn_pca", solver="full"),
        "sklearn PCA(svd_solver='covariance_eigh')": in_subprocess(
            mod, "sklearn_pca", solver="covariance_eigh"
        ),
    }
    stream_evr = rows["StreamingMoments float64 + eigh"]["evr"]
    lines = [
        f"## Streaming PCA, {pca_stream.N:,} × {pca_stream.D} float32, "
        f"{pca_stream.THREADS} threads",
        "",
        f"Floor: {floor['gflops']:.0f} GFLOP/s measured on this CPU (float32 matmul). "
        "Peak memory is each process's maximum RSS minus that of a process holding only the data.",
        "",
        r"| method | time (s) | × floor | peak MiB above data | max \|EVR − ours\| (top 10) |",
        "|---|---|---|---|---|",
    ]
    base_rss = base["peak_rss_mib"]
    for name, r in rows.items():
        evr = r.get("evr")
        diff = max(abs(a - b) for a, b in zip(evr, stream_evr, strict=True)) if evr else None
        lines.append(
            f"| {name} | {r['seconds']:.3f} | {r['seconds'] / floor['seconds']:.1f} | "
            f"{r['peak_rss_mib'] - base_rss:.0f} | {'' if diff is None else f'{diff:.1e}'} |"
        )
    return lines


SECTIONS: dict[str, Callable[[], list[str]]] = {
    "pca": pca_section,
    "gcr": gcr_step.section,
    "clustering": clustering.section,
    "merging": merging.section,
    "merging_fusion_bench": merging.fusion_bench_section,
    "probes": probes.section,
    "training": training.section,
    "adapters": adapters.section,
    "recsys": recsys.section,
    "sae": sae.section,
    "scan": scan.section,
    "worlds_molrg": worlds_molrg.section,
    "molrg_unets": molrg_unets.section,
    "worlds_eigen": worlds_eigen.section,
    "modules": modules.section,
    "minilm": minilm.section,
    "shapes": shapes.section,
    "edgeconv": edgeconv.section,
    "upsample": upsample.section,
    "wavelets": wavelets.section,
    "splats": splats.section,
}
PARTS = Path(__file__).with_name("results")
# Parts measured by their own commands (written in the part), not rerun by this module: the lab
# machinery's before/after rows need the older commit (`python -m benchmarks.lab`), the stacked
# U-Nets on a GPU need a GPU machine (`python -m benchmarks.molrg_unets --device cuda`).
STATIC = ("lab", "molrg_unets_cuda")


def main(names: list[str]) -> None:
    """Run the named benchmarks (all by default); RESULTS.md gathers every recorded section."""
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(SECTIONS)}")
    PARTS.mkdir(exist_ok=True)
    for name in names or list(SECTIONS):
        lines = [
            *SECTIONS[name](),
            "",
            f"_Measured on {machine()}; command: `python -m benchmarks {name}`._",
            "",
        ]
        (PARTS / f"{name}.md").write_text("\n".join(lines))
    gather()
    print(OUT.read_text())


def gather() -> None:
    """Rewrite RESULTS.md from the recorded parts."""
    text = [
        "# Benchmarks",
        "",
        "Produced by `make benchmarks`, or one section at a time with",
        f"`python -m benchmarks [{' '.join(SECTIONS)}]`; the lab section by "
        "`python -m benchmarks.lab` (its commands are in the section).",
        "Not part of `make test`.",
        "",
    ]
    for name in [*SECTIONS, *STATIC]:
        part = PARTS / f"{name}.md"
        text.append(part.read_text() if part.is_file() else f"## {name}\n\nNot measured yet.\n")
    OUT.write_text("\n".join(text))


if __name__ == "__main__":
    main(sys.argv[1:])
